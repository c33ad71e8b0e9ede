"""httpx's requests to the gateway carried by aiohttp.

The Paystack client keeps httpx's interface (its tests mock it with respx), but httpx's own transport
(httpcore) costs about 1 ms of CPU per call under load against about 0.1 ms for aiohttp, measured in
docs/performance.md, and the worker makes one verify call per credited payment. This transport sends each
request with aiohttp and answers with an `httpx.Response`, raising httpx's errors with the meaning the client
relies on: `ConnectError` and `ConnectTimeout` only when the request never left (no connection was made),
every other failure one whose outcome is unknown. aiohttp never sends a POST twice by itself (it retries a
request on a stale kept-alive connection only for idempotent methods).
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx

# Connection failures before anything was sent: the call had no effect.
_NOT_SENT: tuple[type[Exception], ...] = (aiohttp.ClientConnectorError,)


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_expiry: float, tls: ssl.SSLContext) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None

    def _opened(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp binds it to the running event loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive_expiry,
                                             ssl=self._tls)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False,
                                                  skip_auto_headers=("User-Agent", "Accept-Encoding"))
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(connect=timeouts.get("pool"), sock_connect=timeouts.get("connect"),
                                        sock_read=timeouts.get("read"))
        body = await request.aread()
        try:
            async with self._opened().request(
                request.method, str(request.url), headers=request.headers.multi_items(), data=body or None,
                allow_redirects=False, timeout=timeout,
            ) as answer:
                content = await answer.read()
        except aiohttp.ConnectionTimeoutError as error:  # no connection within the time: nothing was sent
            raise httpx.ConnectTimeout(str(error) or "connect timed out", request=request) from error
        except _NOT_SENT as error:
            raise httpx.ConnectError(str(error), request=request) from error
        except aiohttp.SocketTimeoutError as error:
            raise httpx.ReadTimeout(str(error) or "read timed out", request=request) from error
        except aiohttp.ClientPayloadError as error:
            raise httpx.ReadError(str(error), request=request) from error
        except aiohttp.ClientError as error:  # a hang-up or anything else after the request may have left
            raise httpx.RemoteProtocolError(f"{type(error).__name__}: {error}", request=request) from error
        return httpx.Response(answer.status, headers=list(answer.raw_headers), content=content, request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
