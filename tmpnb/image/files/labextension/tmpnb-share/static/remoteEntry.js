// tmpnb's Share button, as a JupyterLab / notebook 7 federated extension written by hand:
// no Node build. A federated extension is a script that sets _JUPYTERLAB[name] to a container
// with init(shareScope) and get(module); the app hands init the webpack share scope, from which
// this takes the app's own @jupyterlab/notebook, @jupyterlab/apputils and @lumino/widgets.
//
// Share: save the notebook, then POST /api/share on tmpnb's origin (the page's own origin, also
// inside a cross-site iframe) with the server's token (from page_config; no cookies needed).
var _JUPYTERLAB;
(function () {
  "use strict";
  var scope = null;

  function shared(name) {
    var versions = scope && scope[name];
    if (!versions) {
      return Promise.reject(new Error(name + " is not in the share scope"));
    }
    var keys = Object.keys(versions);
    var pick = keys.filter(function (k) { return versions[k].loaded; })[0] || keys[keys.length - 1];
    return Promise.resolve(versions[pick].get()).then(function (factory) { return factory(); });
  }

  function contentsPathToUrl(baseUrl, path) {
    var base = new URL(baseUrl, window.location.href).pathname.replace(/\/?$/, "/");
    return base + "notebooks/" + path.split("/").map(encodeURIComponent).join("/");
  }

  function resultNode(answer) {
    var node = document.createElement("div");
    node.className = "tmpnb-share-result";
    var link = new URL(answer.url, window.location.href).href;
    var del = new URL(answer.delete_url, window.location.href).href;
    var p1 = document.createElement("p");
    p1.textContent = "Anyone with this link can read the notebook as saved just now, and remix it:";
    var input = document.createElement("input");
    input.className = "tmpnb-share-url";
    input.readOnly = true;
    input.value = link;
    input.style.width = "100%";
    var open = document.createElement("a");
    open.className = "tmpnb-share-link";
    open.href = link;
    open.target = "_blank";
    open.rel = "noopener noreferrer";
    open.textContent = "Open the shared notebook";
    var p2 = document.createElement("p");
    p2.textContent = "It expires " + new Date(answer.expires).toLocaleString() + ". Keep this link to delete it: ";
    var delLink = document.createElement("a");
    delLink.className = "tmpnb-share-delete";
    delLink.href = del;
    delLink.target = "_blank";
    delLink.rel = "noopener noreferrer";
    delLink.textContent = del;
    p2.appendChild(delLink);
    [p1, input, document.createElement("br"), open, p2].forEach(function (n) { node.appendChild(n); });
    return node;
  }

  function plugin(notebook, apputils, widgets) {
    return {
      id: "tmpnb-share:plugin",
      description: "Share a read-only copy of the notebook through tmpnb.",
      autoStart: true,
      requires: [notebook.INotebookTracker],
      activate: function (app, tracker) {
        var settings = app.serviceManager.serverSettings;
        app.commands.addCommand("tmpnb:share", {
          label: "Share",
          caption: "Save, and get a link to a read-only copy anyone can open and remix",
          isEnabled: function () { return tracker.currentWidget !== null; },
          execute: function () {
            var panel = tracker.currentWidget;
            if (!panel) { return; }
            return panel.context.save().then(function () {
              return fetch(new URL("/api/share", window.location.href).href, {
                method: "POST",
                credentials: "omit",
                headers: { "Authorization": "token " + settings.token, "Content-Type": "application/json" },
                body: JSON.stringify({ url: contentsPathToUrl(settings.baseUrl, panel.context.path) })
              });
            }).then(function (response) {
              return response.json().catch(function () { return {}; }).then(function (answer) {
                if (response.status !== 201) {
                  throw new Error(answer.reason || answer.status || ("tmpnb answered " + response.status));
                }
                return apputils.showDialog({
                  title: "Shared",
                  body: new widgets.Widget({ node: resultNode(answer) }),
                  buttons: [apputils.Dialog.okButton({ label: "Close" })]
                });
              });
            }).catch(function (error) {
              return apputils.showErrorMessage("Could not share", error);
            });
          }
        });
      }
    };
  }

  var container = {
    init: function (shareScope) { scope = shareScope; },
    get: function (module) {
      if (module !== "./extension" && module !== "./index") {
        return Promise.reject(new Error("Module " + module + " does not exist in tmpnb-share"));
      }
      return Promise.all([shared("@jupyterlab/notebook"), shared("@jupyterlab/apputils"), shared("@lumino/widgets")])
        .then(function (modules) {
          var exported = { __esModule: true, default: [plugin(modules[0], modules[1], modules[2])] };
          return function () { return exported; };
        });
    }
  };
  _JUPYTERLAB = _JUPYTERLAB || {};
  _JUPYTERLAB["tmpnb-share"] = container;
})();
