// The API key of this browser tab. sessionStorage keeps it until the tab closes, never in a
// cookie or another tab. On the key page it loads the page asked for with the key; on the
// form it sends the submit with the key. A file of its own: the page's CSP allows no inline
// script.
(() => {
  const NAME = "tabship-api-key";
  const stored = () => sessionStorage.getItem(NAME);

  async function show(response) {
    const html = await response.text();
    document.open();
    document.write(html);
    document.close();
  }

  async function send(url, init) {
    const key = stored();
    const headers = { ...(init.headers || {}), Authorization: `Bearer ${key}` };
    const response = await fetch(url, { ...init, headers, credentials: "omit" });
    if (response.status === 401 && response.headers.get("www-authenticate")) {
      sessionStorage.removeItem(NAME);
      return false;
    }
    await show(response);
    return true;
  }

  const keyForm = document.getElementById("key-form");
  if (keyForm) {
    const failed = () => {
      document.getElementById("key-error").hidden = false;
    };
    keyForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      sessionStorage.setItem(NAME, document.getElementById("api-key").value.trim());
      if (!(await send(location.href, { headers: { Accept: "text/html" } }))) failed();
    });
    if (stored()) send(location.href, { headers: { Accept: "text/html" } });
    return;
  }
  // The form page: a tab that holds a key submits with it; without one (public pages) the
  // browser submits the form as usual.
  for (const form of document.querySelectorAll("form[action='/predict']")) {
    form.addEventListener("submit", async (event) => {
      if (!stored()) return;
      event.preventDefault();
      await send(form.action, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "text/html" },
        body: new URLSearchParams(new FormData(form)),
      });
    });
  }
})();
