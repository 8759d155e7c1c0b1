"""The public proxy, built from its settings: the one place both the standalone proxy
(``twistd tmpnb-proxy``) and tmpnb's embedded one make theirs."""

from __future__ import annotations

from typing import Any

from .answers import LocalAnswers
from .errorpages import ErrorDirectory, ErrorPages, ErrorTarget
from .routes import RouteTable
from .factory import ReverseProxyFactory
from .settings import ProxySettings
from .static import StaticFiles
from .tls import TargetTLS


def public_proxy(reactor: Any, routes: RouteTable, settings: ProxySettings = ProxySettings()) -> ReverseProxyFactory:
    """A listening factory for `routes`: static files, error pages and TLS towards https
    targets made as `settings` describe them (files are read, and checked, now)."""
    client_tls = TargetTLS(settings.client_ssl_key, settings.client_ssl_cert, settings.client_ssl_ca, insecure=settings.insecure)
    error_pages: ErrorPages | None = None
    if settings.error_target:
        error_pages = ErrorTarget(reactor, settings.error_target, client_tls)
    elif settings.error_path:
        error_pages = ErrorDirectory(settings.error_path)
    static = StaticFiles(settings.static_dir) if settings.static_dir else None
    by_flavor = {flavor: StaticFiles(directory) for flavor, directory in settings.flavor_static_dirs}
    return ReverseProxyFactory(reactor, routes, settings, LocalAnswers(static, error_pages, by_flavor), client_tls)
