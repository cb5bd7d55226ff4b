"""The raw yardstick: the same uvicorn/httptools/uvloop stack with the least an app can do
(read the body, json.loads it, answer fixed bytes). Kept here only for `make bench`."""

import json


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    json.loads(body or b"null")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"12345.67"})
