package kvpb

// SetHeader sets the header of any KV response message and reports whether
// m is one: the one place that knows which responses carry a header.
func SetHeader(m any, h *ResponseHeader) bool {
	switch r := m.(type) {
	case *GetResponse:
		r.Header = h
	case *ScanResponse:
		r.Header = h
	case *PutResponse:
		r.Header = h
	case *DeleteResponse:
		r.Header = h
	case *CompareAndSwapResponse:
		r.Header = h
	case *AppendResponse:
		r.Header = h
	case *BatchResponse:
		r.Header = h
	case *OpenSessionResponse:
		r.Header = h
	case *KeepAliveResponse:
		r.Header = h
	case *CloseSessionResponse:
		r.Header = h
	default:
		return false
	}
	return true
}
