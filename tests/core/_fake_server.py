"""The aiohttp plumbing of the core tests' fake ComfyUI servers: an event loop on a thread of its own and ComfyUI's
HTTP routes, each served by the subclass's method of the route's name where it has one. Imported after the tests'
``pytest.importorskip("aiohttp")``."""
import asyncio
import threading

from aiohttp import web

# (method, path, handler name) of the ComfyUI API the client speaks
ROUTES = (("GET", "/object_info", "object_info"), ("GET", "/ws", "ws"), ("POST", "/prompt", "prompt"),
          ("GET", "/history/{pid}", "get_history"), ("GET", "/queue", "get_queue"), ("POST", "/queue", "post_queue"),
          ("POST", "/interrupt", "interrupt"), ("GET", "/view", "view"), ("POST", "/upload/image", "upload"))


class FakeServer:
    """Start with :meth:`serve`; ``url``, ``loop``, ``thread``, ``runner``, ``site`` and ``port`` are then set."""

    def serve(self, ssl_context=None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(ssl_context), self.loop).result(10)
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    async def _start(self, ssl_context):
        app = web.Application()
        for method, path, name in ROUTES:
            if hasattr(self, name):
                app.router.add_route(method, path, getattr(self, name))
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await self.site.start()
        self.port = self.site._server.sockets[0].getsockname()[1]
