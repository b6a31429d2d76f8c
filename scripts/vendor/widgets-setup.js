// Loaded between require.js and html-manager/embed-amd.js on pages with widgets (nb_ipywidgets_js in
// _config.yml); copied to _vendor/ by scripts/vendor_assets.sh.
(function () {
  "use strict";
  // 1. embed-amd.js resolves its Font Awesome fonts (widget icons) against the RequireJS URL of its
  //    @jupyter-widgets/... modules, which defaults to the page's folder (404s). Map those module ids
  //    onto the vendored html-manager/ folder next to this script.
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/[^/]*$/, "");
  var dir = here + "html-manager";
  window.require.config({ paths: { "@jupyter-widgets": dir, "@jupyter-widgets/html-manager/dist": dir } });

  // 2. The bundled controls typeset descriptions and labels with the MathJax 2 API
  //    (MathJax.Hub.Queue) when a MathJax is on the page; the page has MathJax 3, so every widget with
  //    a description threw "Cannot read properties of undefined (reading 'Queue')". Give MathJax 3 a
  //    minimal Hub.Queue that typesets the element it is given.
  function addHub() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || typeof mj.version !== "string" || mj.version.charAt(0) !== "3") return;
    mj.Hub = {
      Queue: function () {
        for (var i = 0; i < arguments.length; i++) {
          var job = arguments[i];
          if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
            var el = job[2];
            mj.startup.promise
              .then(function () { return mj.typesetPromise([el]); })
              .catch(function (err) { console.warn("MathJax typeset of a widget failed:", err); });
          }
        }
      },
    };
  }
  // MathJax (a deferred script) has run by DOMContentLoaded; widgets render on window load.
  document.addEventListener("DOMContentLoaded", addHub);
  window.addEventListener("load", addHub);
})();
