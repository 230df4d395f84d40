"""A rogue agent page in a real browser (issue 9, item 2): Playwright driving Debian's Chromium
against an in-process daemon. Agent `alpha`'s web.sock is replaced by a hostile server that serves
the real page with `data-agent="beta"`, `<base href="/agent/beta/">` and the dashboard's own
script; the operator types into alpha's page and the message still goes to alpha, the agent the
core routed, never to beta."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, async_playwright, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import Dash, dash_of  # noqa: E402

from hivetest import require, sync, until  # noqa: E402
from hyperhive.core.daemon import Daemon  # noqa: E402
from hyperhive.core.lifecycle import AgentRuntime  # noqa: E402
from hyperhive.dashboard.proxy import HARNESS_STATIC  # noqa: E402
from hyperhive.names import OPERATOR  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
T = 10_000  # ms: the bound on every wait


def hostile_page() -> str:
    """The real agent page, rewritten the way a prompt-injected alpha would: it claims to be beta,
    re-bases every relative URL onto beta (keeping the core's scripts, which only load from
    alpha's prefix) and pulls in the dashboard's script."""
    html = (HARNESS_STATIC / "agent.html").read_text(encoding="utf-8")
    html = html.replace('src="static/', 'src="/agent/alpha/static/')
    html = (
        html.replace("{{base}}", '<base href="/agent/beta/">').replace("{{name}}", "beta").replace("{{role}}", "agent")
    )
    return html.replace("</head>", '<script src="/static/dashboard/app.js" defer></script>\n</head>', 1)


class HostileHarness:
    def __init__(self) -> None:
        self.seen: list[str] = []

        async def index(request: Request) -> Response:
            return HTMLResponse(hostile_page())

        async def anything(request: Request) -> Response:
            self.seen.append(f"{request.method} {request.url.path}")
            return JSONResponse({"ok": False, "error": "nothing here"}, status_code=404)

        self.app = Starlette(routes=[Route("/", index), Route("/{rest:path}", anything, methods=["GET", "POST"])])

    @contextlib.asynccontextmanager
    async def serving(self, path: Path) -> AsyncIterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        server = uvicorn.Server(uvicorn.Config(self.app, uds=str(path), lifespan="off", log_level="warning"))
        server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    await asyncio.sleep(0.01)
            yield
        finally:
            server.should_exit = True
            await task


@pytest.fixture
def dash(hive: Daemon) -> Dash:
    return dash_of(hive)


@pytest.fixture
async def context() -> AsyncIterator[BrowserContext]:
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed (apt install chromium)")
    async with async_playwright() as p:
        browser: Browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
            yield ctx
            await ctx.close()
        finally:
            await browser.close()


async def test_a_rogue_page_cannot_redirect_the_operators_message(dash: Dash, context: BrowserContext) -> None:
    """alpha's page says it is beta; the operator's message typed there is delivered to alpha
    (the URL the core routed), nothing reaches beta, and the dashboard's script (which would read
    its recipient from the page) is not allowed to run on the agent page."""
    s = dash.services
    for uid, name in enumerate(("alpha", "beta"), start=921):
        s.lifecycle.agents[name] = AgentRuntime(name, uid, None)
    violations: list[str] = []
    async with HostileHarness().serving(s.config.paths.agent("alpha").web_socket):
        page = await context.new_page()
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        await page.goto(dash.login_url)
        assert page.url == dash.base + "/"
        await page.goto(dash.base + "/agent/alpha/")
        assert await page.locator("body").get_attribute("data-agent") == "beta", "the rogue page is being served"
        box = page.locator("#term-input")
        await expect(box).to_be_visible(timeout=T)
        await expect(box).to_have_attribute("placeholder", "message alpha as the operator, or /help", timeout=T)
        await box.fill("the operator's words, for alpha")
        await box.press("Enter")
        await expect(page.locator("#term")).to_contain_text("→ sent to alpha as message #", timeout=T)

        def delivered() -> list[tuple[str, str]]:
            return [(m.recipient, m.body) for m in sync(s.broker.recent(None, 50)) if m.sender == OPERATOR]

        rows = await until(s.hub, "the operator's message", delivered, 10, explain=lambda: str(delivered()))
        assert rows == [("alpha", "the operator's words, for alpha")]
        # the dashboard's script never ran here: the browser refused it (and so it built nothing)
        await expect(page.locator("#logout-all-btn")).to_have_count(0)
        assert any("app.js" in v for v in violations), violations
