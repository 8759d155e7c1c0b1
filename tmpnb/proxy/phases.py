"""Where a visitor connection is; the exchange and its timer both go by it."""

READ_HEAD = 0  # waiting for (the rest of) a request head, or idle between requests
CONNECTING = 1  # a backend connection is on its way
FORWARDING = 2  # the request goes to the backend, its response comes back
LOCAL = 3  # the proxy answers itself (an error page from the error target, a static file)
SPLICED = 4  # an upgraded connection: a byte pipe until either side closes
CLOSED = 5
BUFFERING = 6  # a small body for the default target read whole before a backend connection is taken
