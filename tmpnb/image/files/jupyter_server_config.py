# Defaults for tmpnb's notebook image. tmpnb passes everything per-container
# (socket, base_url, token) on the command line; these only say what every container shares.
c = get_config()  # noqa: F821

# Containers run with no network: never try to reach the internet for news, updates or the
# extension manager's PyPI listing (notebook 7 also serves JupyterLab at <base_url>lab).
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"

# The visitor starts in their home directory, with Welcome.ipynb in it.
c.ServerApp.root_dir = "/home/jovyan"
# There is no browser in the container: visitors come through tmpnb's proxy.
c.ServerApp.open_browser = False
