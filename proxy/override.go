package proxy

import (
	"bytes"
	"mime"
	"mime/multipart"
	"strings"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/internal/httpx/hdr"
	"github.com/keygate/keygate/internal/reqtarget"
)

// overrideHeaders are configs.OverrideHeaders normalised (lower case, '_'
// and '.' as '-'): request headers some frameworks read as the real method
// or the real path, behind the gateway's method and route checks. They are
// stripped from every request unless headers.keep_override_headers lists
// them.
var overrideHeaders = func() []string {
	out := make([]string, len(configs.OverrideHeaders))
	for i, h := range configs.OverrideHeaders {
		out[i] = normalizeName(h)
	}
	return out
}()

// strippedOverrides returns the normalised override headers to strip: all of
// them but those in keep (any case and '_'/'.' spelling).
func strippedOverrides(keep []string) []string {
	var out []string
	for _, h := range overrideHeaders {
		kept := false
		for _, k := range keep {
			if normEqual([]byte(k), h) {
				kept = true
			}
		}
		if !kept {
			out = append(out, h)
		}
	}
	return out
}

// isOverrideHeader reports whether k is an override header to strip.
func (z *sanitizer) isOverrideHeader(k []byte) bool {
	// Every override header is "x-" and 13 to 22 bytes long: most headers
	// are out after two comparisons.
	if len(k) < 13 || len(k) > 22 || normByte(k[0]) != 'x' || normByte(k[1]) != '-' {
		return false
	}
	for _, n := range z.override {
		if normEqual(k, n) {
			return true
		}
	}
	return false
}

// hasMethodParam reports whether the raw query has a parameter whose name a
// framework may read as "_method" (Laravel, Symfony, Rails-style method
// override): compared after percent-decoding and '+' as space, ignoring
// ASCII case, with PHP's renaming of parameter names applied (leading
// spaces dropped, ' ', '.' and '[' read as '_'), so "%5Fmethod",
// "_METHOD", ".method" and "+method" all count. Pairs are split on '&' and
// ';'. It does not allocate.
func hasMethodParam(query []byte) bool {
	for len(query) > 0 {
		end := 0
		for end < len(query) && query[end] != '&' && query[end] != ';' {
			end++
		}
		pair := query[:end]
		if end < len(query) {
			query = query[end+1:]
		} else {
			query = nil
		}
		if isMethodName(pair) {
			return true
		}
	}
	return false
}

const methodParam = "_method"

// isMethodName reports whether the name of one raw query pair reads as
// "_method" (see hasMethodParam).
func isMethodName(pair []byte) bool {
	j := 0 // next byte of methodParam to match
	leading := true
	for i := 0; i < len(pair); i++ {
		c := pair[i]
		if c == '=' {
			break
		}
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 < len(pair) {
				hi, ok1 := reqtarget.Unhex(pair[i+1])
				lo, ok2 := reqtarget.Unhex(pair[i+2])
				if ok1 && ok2 {
					c = hi<<4 | lo
					i += 2
				}
			}
		}
		if leading && c == ' ' {
			continue // PHP drops leading spaces of a name
		}
		leading = false
		if c == ' ' || c == '.' || c == '[' {
			c = '_'
		}
		if j >= len(methodParam) || hdr.Lower(c) != methodParam[j] {
			return false
		}
		j++
	}
	return j == len(methodParam)
}

// plainMethodName is isMethodName for a name that is not percent-encoded
// (a multipart field name).
func plainMethodName(name string) bool {
	name = strings.TrimLeft(name, " ")
	if len(name) != len(methodParam) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == ' ' || c == '.' || c == '[' {
			c = '_'
		}
		if hdr.Lower(c) != methodParam[i] {
			return false
		}
	}
	return true
}

var (
	mediaForm      = []byte("application/x-www-form-urlencoded")
	mediaMultipart = []byte("multipart/form-data")
)

// hasFormMethodParam reports whether a request body that frameworks parse
// as a form carries a field read as "_method" (Rails' Rack::MethodOverride,
// Laravel and Symfony read it from POST forms first): an
// application/x-www-form-urlencoded body is read as hasMethodParam reads a
// query; a multipart/form-data body has its parts' Content-Disposition names
// read the same way (decoded by mime/multipart, then PHP's renaming). It
// allocates only for multipart bodies; every other body costs one
// comparison of the Content-Type.
func hasFormMethodParam(contentType, body []byte) bool {
	if len(body) == 0 {
		return false
	}
	media := contentType
	if i := bytes.IndexByte(media, ';'); i >= 0 {
		media = media[:i]
	}
	media = bytes.TrimSpace(media)
	switch {
	case hdr.EqualFold(media, mediaForm):
		return hasMethodParam(body)
	case hdr.EqualFold(media, mediaMultipart):
		_, params, err := mime.ParseMediaType(string(contentType))
		if err != nil || params["boundary"] == "" {
			return false // the upstream cannot parse it as a form either
		}
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := r.NextRawPart()
			if err != nil {
				return false
			}
			if plainMethodName(part.FormName()) {
				return true
			}
		}
	}
	return false
}
