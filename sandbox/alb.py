"""What an AWS Application Load Balancer answers by itself, in front of the sandbox's apps.

Production puts each service behind its own ALB; the sandbox has one listener per ALB instead. With
no healthy target an ALB answers an HTML 503 (not JSON), which is how probes tell "the target is
down" from "the app answered 503" -- so the body here copies the ALB's byte for byte in spirit.
"""

from __future__ import annotations

from starlette.responses import HTMLResponse

_NO_HEALTHY_TARGET_HTML = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n"
)


def no_healthy_target() -> HTMLResponse:
    """The ALB's answer when its target group has no healthy target."""
    return HTMLResponse(_NO_HEALTHY_TARGET_HTML, status_code=503, headers={"Server": "awselb/2.0"})
