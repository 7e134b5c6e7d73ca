"""Python client of Aquifer, a real-time data engine: sync (:class:`Client`) and asyncio
(:class:`AsyncClient`) APIs over its HTTP/WebSocket API.

    import aquifer
    with aquifer.Client("http://127.0.0.1:8080", "aq_...") as aq:
        aq.write("demo.events", [{"user": "ada", "ts": 1}], wait="index")
        print(aq.query("demo.events", {"user": "ada"}).data)
"""

from ._async import AsyncClient, AsyncSubscription
from ._core import Page, RetryPolicy, SqlResult, WriteResult
from ._errors import (
    AquiferError,
    APIError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    GatewayTimeout,
    InternalError,
    JobFailed,
    JobTimeout,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServerError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UpgradeRequired,
)
from ._sync import Client, Subscription
from ._version import __version__

__all__ = [
    "APIError",
    "AquiferError",
    "AsyncClient",
    "AsyncSubscription",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "GatewayTimeout",
    "InternalError",
    "JobFailed",
    "JobTimeout",
    "MethodNotAllowed",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "RetryPolicy",
    "ServerError",
    "SqlResult",
    "Subscription",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UpgradeRequired",
    "WriteResult",
    "__version__",
]
