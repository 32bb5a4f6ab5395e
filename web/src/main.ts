/**
 * The Rendition dashboard: plain TypeScript and DOM (dom.ts's h()), hash routes, one page module
 * per view. Every call is an RPC of the public API through @connectrpc/connect-web with the
 * caller's API key; nothing here has powers an API client lacks.
 */
import "./style.css";
import { createApi, clearSession, describeError, loadSession, saveSession, type Api, type Session } from "./api.js";
import { field, h, replace } from "./dom.js";
import { createPage } from "./pages/create.js";
import { jobPage } from "./pages/job-detail.js";
import { jobsPage } from "./pages/jobs.js";
import { originsPage } from "./pages/origins.js";
import { presetsPage } from "./pages/presets.js";
import { queuePage } from "./pages/queue.js";

export interface PageContext {
  api: Api;
  session: Session;
  /** The route's query (#/jobs?status=…). */
  params: URLSearchParams;
  /** Aborted when the page is left: Watch streams and timers stop with it. */
  signal: AbortSignal;
  navigate(hash: string): void;
  /** Sets the page's <title> and its <h1>. */
  title(text: string): HTMLHeadingElement;
}

type Page = (ctx: PageContext, root: HTMLElement, id?: string) => void | Promise<void>;

const NAV: Array<{ hash: string; label: string; match: RegExp }> = [
  { hash: "#/jobs", label: "Jobs", match: /^\/jobs/ },
  { hash: "#/create", label: "Create job", match: /^\/create/ },
  { hash: "#/queue", label: "Queue", match: /^\/queue/ },
  { hash: "#/origins", label: "Origins", match: /^\/origins/ },
  { hash: "#/presets", label: "Presets", match: /^\/presets/ },
];

function route(path: string): { page: Page; id?: string } | undefined {
  const job = /^\/jobs\/([^/]+)$/.exec(path);
  if (job) return { page: jobPage, id: decodeURIComponent(job[1]!) };
  const pages: Record<string, Page> = { "/jobs": jobsPage, "/create": createPage, "/queue": queuePage, "/origins": originsPage, "/presets": presetsPage };
  return pages[path] ? { page: pages[path] } : undefined;
}

const main = document.getElementById("main")!;
const nav = document.getElementById("nav")!;
let current: AbortController | undefined;
let firstRender = true;

function parseHash(): { path: string; params: URLSearchParams } {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(1) : "/jobs";
  const [path, query = ""] = raw.split("?");
  return { path: path!, params: new URLSearchParams(query) };
}

function renderNav(path: string, session: Session | undefined): void {
  if (!session) {
    replace(nav);
    return;
  }
  replace(
    nav,
    h(
      "ul",
      null,
      NAV.map((item) => h("li", null, h("a", { href: item.hash, "aria-current": item.match.test(path) ? "page" : undefined }, item.label))),
      h(
        "li",
        null,
        h("button", {
          type: "button",
          class: "link",
          onclick: () => {
            clearSession();
            location.hash = "#/signin";
          },
        }, "Sign out"),
      ),
    ),
  );
}

function render(): void {
  // Only #/… fragments are routes; others (the skip link's #main) are in-page anchors.
  if (location.hash && !location.hash.startsWith("#/")) return;
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const { path, params } = parseHash();
  const session = loadSession();
  renderNav(path, session);
  replace(main);
  const initial = firstRender;
  firstRender = false;
  const title = (text: string) => {
    document.title = `${text} · Rendition`;
    const heading = h("h1", { tabindex: "-1" }, text);
    main.prepend(heading);
    // After a route change, a screen reader starts at the new page's heading, not at the old link.
    if (!initial) heading.focus({ preventScroll: true });
    return heading;
  };
  if (!session || path === "/signin") {
    signIn(main, title, params.get("next") ?? "#/jobs", initial);
    return;
  }
  const target = route(path);
  if (!target) {
    title("Not found");
    main.append(h("p", null, "No such page. ", h("a", { href: "#/jobs" }, "Go to the jobs list"), "."));
    return;
  }
  const api = createApi(session, () => {
    if (controller.signal.aborted) return;
    clearSession();
    location.hash = `#/signin?next=${encodeURIComponent(location.hash)}&expired=1`;
  });
  const ctx: PageContext = { api, session, params, signal: controller.signal, navigate: (hash) => (location.hash = hash), title };
  void Promise.resolve(target.page(ctx, main, target.id)).catch((err: unknown) => {
    if (controller.signal.aborted) return;
    main.append(h("div", { class: "error", role: "alert" }, describeError(err).map((line) => h("p", null, line))));
  });
}

function signIn(root: HTMLElement, title: (text: string) => HTMLHeadingElement, next: string, focusKey: boolean): void {
  title("Sign in");
  const key = h("input", { name: "api_key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const org = h("input", { name: "organization_id", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("div", { role: "status", "aria-live": "polite", class: "status" });
  const expired = new URLSearchParams(location.hash.split("?")[1] ?? "").get("expired");
  const form = h(
    "form",
    { class: "card narrow", "aria-label": "Sign in" },
    expired ? h("p", { class: "error", role: "alert" }, "The API key was refused (revoked, or another organization's): sign in again.") : null,
    h("p", null, "Use an API key and its organization id. On a first ", h("code", null, "npm start"), " the server prints both (and writes them to ", h("code", null, "data/credentials.json"), ")."),
    field("API key", key, "rnd_live_… or rnd_test_…; kept in this tab's session storage only."),
    field("Organization id", org, "org_…"),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const session = { apiKey: key.value.trim(), organizationId: org.value.trim() };
    replace(status, "Checking the key…");
    // Any authenticated call proves the pair: the cheapest is a one-item preset list.
    createApi(session, () => undefined)
      .presets.list({ pagination: { limit: 1 } })
      .then(() => {
        saveSession(session);
        const target = next.startsWith("#/") && !next.startsWith("#/signin") ? next : "#/jobs";
        if (location.hash === target) render();
        else location.hash = target;
      })
      .catch((err: unknown) => replace(status, h("span", { class: "error" }, describeError(err).join("; "))));
  });
  root.append(form);
  if (focusKey) key.focus();
}

window.addEventListener("hashchange", render);
render();
