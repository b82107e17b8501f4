package httpx

import (
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// PeerAddr is the IP of the TCP peer of ctx (unmapped); for any other peer,
// what fasthttp's RemoteIP says (0.0.0.0). It does not allocate.
func PeerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	ip, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return ip.Unmap()
}
