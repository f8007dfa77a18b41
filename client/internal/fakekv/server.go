package fakekv

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/cairnkv/cairn/api/kvpb"
)

// server is one node's KV service.
type server struct {
	kvpb.UnimplementedKVServer
	n *node
}

func writeCall(method string, h *kvpb.WriteHeader, key []byte) Call {
	return Call{Method: method, Key: key, Session: h.GetSessionId(), Seq: h.GetSeq(), LowestUnacked: h.GetLowestUnackedSeq()}
}

// writeOp adapts a store operation to store.write's exec.
func writeOp[T proto.Message](f func(idx uint64, data map[string]*kvpb.KeyValue) (T, *kvpb.ErrorDetail)) func(uint64, map[string]*kvpb.KeyValue) (proto.Message, *kvpb.ErrorDetail) {
	return func(idx uint64, data map[string]*kvpb.KeyValue) (proto.Message, *kvpb.ErrorDetail) {
		r, d := f(idx, data)
		if d != nil {
			return nil, d
		}
		return r, nil
	}
}

// cast turns store.write's answer back into T.
func cast[T proto.Message](m proto.Message, d *kvpb.ErrorDetail) (T, *kvpb.ErrorDetail) {
	if d != nil {
		var zero T
		return zero, d
	}
	return m.(T), nil
}

func (s *server) Get(ctx context.Context, r *kvpb.GetRequest) (*kvpb.GetResponse, error) {
	cons := r.GetHeader().GetConsistency()
	call := Call{Method: "Get", Key: r.GetKey(), Consistency: cons}
	return serve(ctx, s.n, call, cons != kvpb.Consistency_SERIALIZABLE, func(st *store) (*kvpb.GetResponse, *kvpb.ErrorDetail) {
		return st.get(r.GetKey())
	})
}

func (s *server) Scan(ctx context.Context, r *kvpb.ScanRequest) (*kvpb.ScanResponse, error) {
	cons := r.GetHeader().GetConsistency()
	call := Call{Method: "Scan", Key: r.GetStart(), Consistency: cons}
	return serve(ctx, s.n, call, cons != kvpb.Consistency_SERIALIZABLE, func(st *store) (*kvpb.ScanResponse, *kvpb.ErrorDetail) {
		return st.scan(r, s.n.c.lim.MaxScan)
	})
}

func (s *server) Put(ctx context.Context, r *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	return serve(ctx, s.n, writeCall("Put", r.GetHeader(), r.GetKey()), true, func(st *store) (*kvpb.PutResponse, *kvpb.ErrorDetail) {
		return cast[*kvpb.PutResponse](st.write(r.GetHeader(), "Put", r.GetKey(), writeOp(func(idx uint64, data map[string]*kvpb.KeyValue) (*kvpb.PutResponse, *kvpb.ErrorDetail) {
			return st.put(idx, data, r)
		})))
	})
}

func (s *server) Delete(ctx context.Context, r *kvpb.DeleteRequest) (*kvpb.DeleteResponse, error) {
	return serve(ctx, s.n, writeCall("Delete", r.GetHeader(), r.GetKey()), true, func(st *store) (*kvpb.DeleteResponse, *kvpb.ErrorDetail) {
		return cast[*kvpb.DeleteResponse](st.write(r.GetHeader(), "Delete", r.GetKey(), writeOp(func(_ uint64, data map[string]*kvpb.KeyValue) (*kvpb.DeleteResponse, *kvpb.ErrorDetail) {
			return st.delete(data, r)
		})))
	})
}

func (s *server) CompareAndSwap(ctx context.Context, r *kvpb.CompareAndSwapRequest) (*kvpb.CompareAndSwapResponse, error) {
	return serve(ctx, s.n, writeCall("CompareAndSwap", r.GetHeader(), r.GetKey()), true, func(st *store) (*kvpb.CompareAndSwapResponse, *kvpb.ErrorDetail) {
		return cast[*kvpb.CompareAndSwapResponse](st.write(r.GetHeader(), "CompareAndSwap", r.GetKey(), writeOp(func(idx uint64, data map[string]*kvpb.KeyValue) (*kvpb.CompareAndSwapResponse, *kvpb.ErrorDetail) {
			return st.cas(idx, data, r)
		})))
	})
}

func (s *server) Append(ctx context.Context, r *kvpb.AppendRequest) (*kvpb.AppendResponse, error) {
	return serve(ctx, s.n, writeCall("Append", r.GetHeader(), r.GetKey()), true, func(st *store) (*kvpb.AppendResponse, *kvpb.ErrorDetail) {
		return cast[*kvpb.AppendResponse](st.write(r.GetHeader(), "Append", r.GetKey(), writeOp(func(idx uint64, data map[string]*kvpb.KeyValue) (*kvpb.AppendResponse, *kvpb.ErrorDetail) {
			return st.append(idx, data, r)
		})))
	})
}

func (s *server) Batch(ctx context.Context, r *kvpb.BatchRequest) (*kvpb.BatchResponse, error) {
	return serve(ctx, s.n, writeCall("Batch", r.GetHeader(), nil), true, func(st *store) (*kvpb.BatchResponse, *kvpb.ErrorDetail) {
		return cast[*kvpb.BatchResponse](st.write(r.GetHeader(), "Batch", nil, writeOp(func(idx uint64, data map[string]*kvpb.KeyValue) (*kvpb.BatchResponse, *kvpb.ErrorDetail) {
			return st.batch(idx, data, r)
		})))
	})
}

func (s *server) OpenSession(ctx context.Context, r *kvpb.OpenSessionRequest) (*kvpb.OpenSessionResponse, error) {
	return serve(ctx, s.n, Call{Method: "OpenSession"}, true, func(st *store) (*kvpb.OpenSessionResponse, *kvpb.ErrorDetail) {
		return st.openSession(), nil
	})
}

func (s *server) KeepAlive(ctx context.Context, r *kvpb.KeepAliveRequest) (*kvpb.KeepAliveResponse, error) {
	call := Call{Method: "KeepAlive", Session: r.GetSessionId(), LowestUnacked: r.GetLowestUnackedSeq()}
	return serve(ctx, s.n, call, true, func(st *store) (*kvpb.KeepAliveResponse, *kvpb.ErrorDetail) {
		return st.keepAlive(r)
	})
}

func (s *server) CloseSession(ctx context.Context, r *kvpb.CloseSessionRequest) (*kvpb.CloseSessionResponse, error) {
	call := Call{Method: "CloseSession", Session: r.GetSessionId()}
	return serve(ctx, s.n, call, true, func(st *store) (*kvpb.CloseSessionResponse, *kvpb.ErrorDetail) {
		return st.closeSession(r), nil
	})
}
