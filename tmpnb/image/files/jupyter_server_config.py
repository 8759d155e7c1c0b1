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

# What a start imports is what it costs (time and memory), in every container:
# - kernels are found in Jupyter's data path only; the default also looks in ~/.ipython/kernels
#   (IPython 3's place), which imports IPython into the server;
from jupyter_core.paths import jupyter_path  # noqa: E402

c.KernelSpecManager.kernel_dirs = jupyter_path("kernels")
# - notebook_shim runs notebook 6 server extensions (none here), and listing their paths imports
#   IPython too; jupyter_lsp serves language servers, and none is installed (its front end is
#   off in labconfig/page_config.json, so the UI does not ask for it).
c.ServerApp.jpserver_extensions = {"notebook_shim": False, "jupyter_lsp": False}
