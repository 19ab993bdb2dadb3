// Renders the admin API's OpenAPI document (the element's data-spec) with
// Redoc, vendored beside this file (scripts/vendor-redoc.sh). This is a file
// of its own because the page's Content-Security-Policy allows no inline
// script.
"use strict";
(function () {
  var el = document.getElementById("redoc");
  window.Redoc.init(el.getAttribute("data-spec"), {
    expandResponses: "200,201,202,204",
    jsonSampleExpandLevel: 3,
    pathInMiddlePanel: true,
    requiredPropsFirst: true
  }, el, function (err) {
    if (err) {
      el.textContent = "The API reference could not be rendered: " + err + ". The document itself is at " + el.getAttribute("data-spec") + ".";
    }
  });
})();
