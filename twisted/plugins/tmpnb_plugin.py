"""twistd commands of tmpnb: one line each, nothing heavy imported here."""

from twisted.application.service import ServiceMaker

tmpnb = ServiceMaker("tmpnb", "tmpnb.tap", "Temporary Jupyter notebook servers in Docker containers", "tmpnb")
tmpnbProxy = ServiceMaker("tmpnb-proxy", "tmpnb.proxy.tap", "tmpnb's reverse proxy with configurable-http-proxy's REST API", "tmpnb-proxy")
tmpnbRedirector = ServiceMaker("tmpnb-redirector", "tmpnb.redirector.tap", "Sends each new visitor to one of several tmpnb nodes", "tmpnb-redirector")
