package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// modulePath is this module's path, which BuildBinary checks the module
// root it finds against.
const modulePath = "github.com/cairnkv/cairn"

// BuildBinary builds the cairn server binary (./cmd/cairn of this module)
// into dir, as dir/cairn, and returns its absolute path. race builds it
// with the race detector; otherwise it is the static binary the Dockerfile
// holds (CGO_ENABLED=0, -trimpath). tags are build tags (the control tests
// build deliberately broken servers with them; see kv/control.go).
// It finds the module root from this source file's location or, when the
// source is not where it was compiled (-trimpath, a copied binary), from
// `go env GOMOD` in the working directory; it runs `go build` with ctx.
func BuildBinary(ctx context.Context, dir string, race bool, tags ...string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("chaos: build: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("chaos: build: %w", err)
	}
	bin := filepath.Join(abs, "cairn")
	args := []string{"build", "-o", bin}
	env := os.Environ()
	if race {
		args = append(args, "-race")
	} else {
		// The static build of the Dockerfile (and of the tests that run the
		// binary): the same flags share the build cache.
		args = append(args, "-trimpath")
		env = append(env, "CGO_ENABLED=0")
	}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, "./cmd/cairn")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chaos: go %s (in %s): %w\n%s", strings.Join(args, " "), root, err, out)
	}
	return bin, nil
}

// moduleRoot finds the directory of this module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		// file is <root>/internal/chaos/build.go.
		root := filepath.Dir(filepath.Dir(filepath.Dir(file)))
		if isModuleRoot(root) {
			return root, nil
		}
	}
	cmd := exec.CommandContext(ctx, "go", "env", "GOMOD")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("chaos: finding the module root: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("chaos: finding the module root: not inside a module (run from the cairn repository)")
	}
	root := filepath.Dir(gomod)
	if !isModuleRoot(root) {
		return "", fmt.Errorf("chaos: finding the module root: %s is not module %s", gomod, modulePath)
	}
	return root, nil
}

// isModuleRoot tells whether dir holds the go.mod of this module.
func isModuleRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == modulePath
		}
	}
	return false
}
