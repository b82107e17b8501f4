package httpx

import (
	"fmt"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/configs"
)

// NewServer returns a fasthttp server for handler with the limits of l (a
// normalised, valid limits section): read, write and idle timeouts, the
// largest body, the read buffer (limits.max_header bounds the request line
// and headers), Concurrency; no default Content-Type, connections closed on
// shutdown, request content kept out of fasthttp's error messages, which
// go to log at debug level (Logger); requests fasthttp cannot read are
// answered by ErrorHandler. The caller adds what is its own (the proxy its
// connection policy and streamed bodies, the admin listener its Server
// header) before serving.
func NewServer(l configs.Limits, handler fasthttp.RequestHandler, log *zap.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               handler,
		ErrorHandler:          ErrorHandler,
		Logger:                Logger{log},
		ReadTimeout:           l.ReadTimeout.D(),
		WriteTimeout:          l.WriteTimeout.D(),
		IdleTimeout:           l.IdleTimeout.D(),
		MaxRequestBodySize:    l.MaxBody.Int(),
		ReadBufferSize:        l.MaxHeader.Int(),
		Concurrency:           l.Concurrency,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		SecureErrorLogMessage: true,
	}
}

// Logger sends fasthttp's own messages to zap at debug level (with
// SecureErrorLogMessage they hold no request content). A nil L drops them.
type Logger struct{ L *zap.Logger }

// Printf implements fasthttp.Logger.
func (f Logger) Printf(format string, args ...any) {
	if f.L == nil {
		return
	}
	if ce := f.L.Check(zap.DebugLevel, "fasthttp"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, args...)))
	}
}
