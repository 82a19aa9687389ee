"""HelixFlow's Python SDK.

- helixflow.credentials: ClientCredentials, APIKey, PersonLogin;
- helixflow.triton.grpc / .http (and .aio): tritonclient with them;
- helixflow.ws: WebSocket streaming with reconnection;
- helixflow.api: the model catalogue and usage (Client, AsyncClient);
- helixflow.retry, helixflow.errors: the retry policy and the exceptions.
"""

from .api import AsyncClient, Client
from .credentials import APIKey, ClientCredentials, Credentials, PersonLogin
from .errors import (APIError, AuthenticationError, ConfigurationError, HelixError, PermissionDeniedError,
                     RateLimitedError, UnavailableError)
from .retry import NO_RETRY, RetryPolicy

__version__ = "0.1.0"

__all__ = ["APIError", "APIKey", "AsyncClient", "AuthenticationError", "Client", "ClientCredentials",
           "ConfigurationError", "Credentials", "HelixError", "NO_RETRY", "PermissionDeniedError", "PersonLogin",
           "RateLimitedError", "RetryPolicy", "UnavailableError"]
