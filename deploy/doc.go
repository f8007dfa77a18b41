// Package deploy holds the test of cairn's container deployment: the
// Dockerfile and docker-compose.yml at the repository's root. The test
// (compose_test.go) builds the image, brings a 3-node Compose cluster up
// and runs it through a container kill and a network partition under
// client load. It needs Docker and Docker Compose (the plugin, or
// docker-compose v1); without them it skips, saying so, unless
// CAIRN_REQUIRE_DOCKER=1, which makes it fail instead.
package deploy
