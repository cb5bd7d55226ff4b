// Starts Swagger UI on this server's /openapi.json; a file of its own so the page's
// Content-Security-Policy needs no inline script. It runs at once (the bundle is loaded
// before it, and the page may have been written by key.js, after its load event), and sends
// the tab's API key, if it holds one, with every request it makes.
(() => {
  const key = sessionStorage.getItem("tabship-api-key");
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (request) => {
      if (key) request.headers.Authorization = `Bearer ${key}`;
      return request;
    },
  });
})();
