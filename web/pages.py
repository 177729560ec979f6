"""The four pages and their static files, with the headers every page carries."""

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from web.api import Api

api = Api()
PAGES_DIR = Path(__file__).parent / "pages"
STATIC_DIR = Path(__file__).parent / "static"
PAGES = ("kiosk", "expert", "clerk", "admin", "supervisor")

# No inline script or style and no eval anywhere: the pages run under this policy
# (browser automation evaluates through the debugging protocol, which the policy
# does not restrict).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    # pdf.js (the kiosk's previews) runs in a module worker of this origin; fonts
    # it builds from a document's bytes are FontFace objects, not fetches.
    "worker-src 'self'; "
    "frame-ancestors 'self'; form-action 'self'"
)


def render_page(name: str) -> bytes:
    """A page's body inside the shared layout (header, login form, confirm dialog),
    with the call view (video, chat, end) where the body asks for ``{call}`` and
    the page's own header controls (``<name>-header.html``, the kiosk's text size)
    beside the language switch."""
    layout = (PAGES_DIR / "layout.html").read_text(encoding="utf-8")
    body = (PAGES_DIR / f"{name}.html").read_text(encoding="utf-8")
    call = (PAGES_DIR / "call.html").read_text(encoding="utf-8")
    header_file = PAGES_DIR / f"{name}-header.html"
    header = header_file.read_text(encoding="utf-8") if header_file.exists() else ""
    html = (
        layout.replace("{header}", header)
        .replace("{body}", body.replace("{call}", call))
        .replace("{page}", name)
    )
    return html.encode("utf-8")


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    html = render_page(name)

    async def serve(_request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=html,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    serve.__name__ = f"{name}_page"
    return serve


for _name in PAGES:
    api.route(
        "GET",
        f"/{_name}",
        summary=f"The {_name} page (HTML).",
        roles=None,
        tag="pages",
        content_type="text/html",
    )(_page(_name))
api.route(
    "GET",
    "/",
    summary="Index of the pages (HTML).",
    roles=None,
    tag="pages",
    content_type="text/html",
)(_page("index"))


def add_static(app: web.Application) -> None:
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    # Same-origin frames only: the preview dialog shows PDFs in a frame.
    headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    # The kiosk and expert pages need the camera and microphone of this origin only.
    headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
    if request.secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith("/api/"):
        headers.setdefault("Cache-Control", "no-store")
    return response
