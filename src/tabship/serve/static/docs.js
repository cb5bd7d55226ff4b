// Starts Swagger UI on this server's /openapi.json; a file of its own so the page's
// Content-Security-Policy needs no inline script.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
