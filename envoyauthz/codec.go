package envoyauthz

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// deterministic encodes the responses that are sent many times, so the
// same decision always produces the same bytes.
var deterministic = proto.MarshalOptions{Deterministic: true}

// Codec returns the gRPC codec to serve g with (grpc.ForceServerCodecV2):
// the standard protobuf codec, except that the responses g shares (the
// prebuilt denials and the cached allowed responses) are encoded once and
// then sent from those bytes. Encoding an allowed response, whose dynamic
// metadata is a protobuf map, otherwise costs about as much as the rest of
// the check. Every other message, of every service on the server, goes to
// the standard codec.
func (g *Server) Codec() encoding.CodecV2 { return codec{g} }

type codec struct{ g *Server }

// Name is the standard codec's: the content-subtype stays "proto".
func (c codec) Name() string { return grpcproto.Name }

// Marshal encodes v, from the cached bytes when v is a shared response.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if resp, ok := v.(*authv3.CheckResponse); ok {
		if b := c.g.encoded(resp); b != nil {
			return mem.BufferSlice{mem.SliceBuffer(b)}, nil
		}
	}
	return c.g.std.Marshal(v)
}

// Unmarshal is the standard codec's.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.g.std.Unmarshal(data, v) }

// encoded returns the encoding of a shared response, making it on first use,
// or nil for a response built for one check only.
func (g *Server) encoded(resp *authv3.CheckResponse) []byte {
	if b, ok := g.denied[resp]; ok {
		return b
	}
	v, ok := g.wire.Load(resp)
	if !ok {
		return nil
	}
	e := v.(*okEntry)
	if !e.reused.Load() {
		return nil
	}
	if b := e.wire.Load(); b != nil {
		return *b
	}
	b, err := deterministic.Marshal(resp)
	if err != nil {
		return nil
	}
	e.wire.Store(&b)
	return b
}
