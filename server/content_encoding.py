"""Request bodies sent with a Content-Encoding, decoded by us rather than by aiohttp.

aiohttp decodes gzip and deflate bodies inside its HTTP parser when asked to
(`auto_decompress`), and a body that does not decode then fails outside any handler: a
500 from `request.read()`, a plain-text 400, or (a deflate stream cut short and sent in
two packets) a request that never gets an answer. The app turns that off
(`handler_args` in server/app.py) and reads the raw bytes; this module decodes them, so
every failure is a JSON 4xx and the connection stays usable (the HTTP framing was fine).
"""

from __future__ import annotations

import zlib

from server.errors import ApiError, bad_request

SUPPORTED = "identity, gzip or deflate"


def decode_body(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """`raw` decoded per its Content-Encoding header, at most `limit` bytes once decoded
    (the same limit as an uncompressed body: a small gzip bomb is a 413, not a big
    allocation)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity") or not raw:
        return raw
    if encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        # RFC 9110 deflate is a zlib stream; some clients send raw deflate (no header).
        # Tell them apart as aiohttp and browsers do: by the compression method nibble.
        wbits = zlib.MAX_WBITS if raw[0] & 0x0F == 8 else -zlib.MAX_WBITS
        decoder = zlib.decompressobj(wbits)
    else:
        raise ApiError(
            415, {"error": f"unsupported Content-Encoding {encoding[:40]!r}: send {SUPPORTED}"}
        )
    try:
        out = decoder.decompress(raw, limit + 1)
    except zlib.error:
        raise bad_request(f"body is not valid {encoding} data") from None
    if len(out) > limit:
        raise ApiError(413, {"error": "request body too large"})
    if not decoder.eof:
        raise bad_request(f"{encoding} body is truncated")
    if decoder.unused_data:
        raise bad_request(f"{encoding} body has data after its end")
    return out
