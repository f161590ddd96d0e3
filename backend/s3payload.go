package backend

import (
	"context"
	"net"
	"strings"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// unsignedPayloadID names the middleware of unsignedLoopbackPayload.
const unsignedPayloadID = "tapefs:UnsignedLoopbackPayload"

// unsignedLoopbackPayload sends the body of an upload (PutObject,
// UploadPart) to a plain-HTTP endpoint on this machine unsigned, as the SDK
// does over HTTPS, where TLS protects it: it then computes only the body's
// CRC32 checksum (x-amz-checksum-crc32, a signed header the server checks),
// not also the SHA-256 that SigV4 signs over plain HTTP. The SHA-256 guards
// a body against being changed on the network between client and server;
// a loopback connection crosses none. It cost a quarter of the daemon's
// CPU time and an eighth of the server's when copying a large tape in.
//
// It must run before the SDK's checksum middleware, which computes the
// SHA-256 with the CRC unless a payload hash is already set, and after the
// endpoint is resolved, which sets the request's URL: right after
// ResolveEndpointV2, where the checksum middleware is inserted too (this
// one is inserted later, so it lands in front of it).
//
// Only for a client whose requests carry a checksum (the SDK's default,
// RequestChecksumCalculation WhenSupported): without one, an unsigned body
// would have nothing guarding it.
func unsignedLoopbackPayload(stack *middleware.Stack) error {
	return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc(unsignedPayloadID,
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok && unsignedBodyOK(middleware.GetOperationName(ctx), req) {
				ctx = v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD")
			}
			return next.HandleFinalize(ctx, in)
		}), "ResolveEndpointV2", middleware.After)
}

// unsignedBodyOK says whether the body of op, sent as req, may go unsigned:
// an upload over plain HTTP to a loopback address.
func unsignedBodyOK(op string, req *smithyhttp.Request) bool {
	if op != "PutObject" && op != "UploadPart" || req.IsHTTPS() || req.URL == nil {
		return false
	}
	return isLoopback(req.URL.Hostname())
}

// isLoopback says whether host names this machine: a loopback IP address
// or localhost (which RFC 6761 reserves for it).
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
