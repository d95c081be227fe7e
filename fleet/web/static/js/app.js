// The dashboard: log in, pick a district and a date, and one page per job —
// 调度 (dispatch), 监控 (live), 监管 (supervision), 轨迹回放 (playback), 报表 (reports),
// 管理 (admin: users and districts).
import { api, chosenDay, clear, closeModal, h, hideToast, session, showError, todayIn } from "./core.js";
import { applyStatic, currentLang, setLang, t } from "./i18n.js";
import { CityMap } from "./map.js";
import { DispatchPage } from "./dispatch.js";
import { LivePage } from "./live.js";
import { SupervisePage } from "./supervise.js";
import { PlaybackPage } from "./playback.js";
import { ReportsPage } from "./reports.js";
import { AdminPage } from "./admin.js";

const PAGES = {
  dispatch: DispatchPage, live: LivePage, supervise: SupervisePage, playback: PlaybackPage, reports: ReportsPage,
  admin: AdminPage,
};
// Pages without the map: the panel takes the whole width.
const WITHOUT_MAP = new Set(["reports", "admin"]);
const $ = (id) => document.getElementById(id);

const state = {
  map: null,
  page: null,
  pageName: null,
  districts: [],
  mounting: Promise.resolve(),
  refreshing: null,
  refreshWanted: false,
};

function context() {
  return {
    map: state.map,
    panel: $("panel"),
    ...chosenDay(),
  };
}

async function showPage() {
  const name = (location.hash.replace(/^#\//, "") || "dispatch").split("?")[0];
  const pageName = PAGES[name] ? name : "dispatch";
  for (const a of document.querySelectorAll(".tabs a")) {
    a.classList.toggle("active", a.dataset.page === pageName);
  }
  if (state.page) state.page.unmount();
  state.map.clear("routes", "ledger", "track", "trucks");
  state.map.setLegend([]);
  state.map.labelControls();
  clear($("panel"));
  state.pageName = pageName;
  state.page = new PAGES[pageName]();
  document.body.dataset.page = pageName;
  document.body.classList.toggle("without-map", WITHOUT_MAP.has(pageName));
  state.map.invalidate();
  state.mounting = (async () => {
    try {
      await state.map.loadBase(context().district);
      await state.page.mount(context());
    } catch (err) {
      showError(err);
    }
  })();
  await state.mounting;
}

function refresh() {
  // Refreshes run one at a time, and those asked for while one runs fold into one more
  // with the newest district and date: a slow answer for the day just left never
  // overwrites the day chosen after it.
  state.refreshWanted = true;
  if (!state.refreshing) {
    state.refreshing = (async () => {
      // A change of district or date while a page is still mounting waits for it.
      await state.mounting;
      while (state.refreshWanted && state.page) {
        state.refreshWanted = false;
        try {
          await state.map.loadBase(context().district);
          await state.page.refresh(context());
        } catch (err) {
          showError(err);
        }
      }
      state.refreshing = null;
    })();
  }
  return state.refreshing;
}

async function start() {
  session.user = await api("/auth/me");
  session.config = await api("/config");
  state.districts = await api("/districts");
  $("login").hidden = true;
  $("shell").hidden = false;
  $("who").textContent = `${session.user.display_name || session.user.username} · ${t(`role.${session.user.role}`)}`;
  // User administration is for admins who see every district (the API says the same).
  document.querySelector("a[data-page=admin]").hidden = !(session.user.role === "admin" && !session.user.districts.length);
  const select = $("district");
  const remembered = localStorage.getItem("clearday.district");
  clear(select, state.districts.map((d) => h("option", { value: d.district_id }, `${d.name} (${d.district_id})`)));
  if (state.districts.some((d) => d.district_id === remembered)) select.value = remembered;
  $("service-date").value = todayIn(session.config.timezone);
  if (!state.map) state.map = new CityMap($("map"), session.config);
  state.map.invalidate();
  await showPage();
}

function showLogin(message = "") {
  if (state.page) state.page.unmount();
  state.page = null;
  $("shell").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("login-password").value = "";
  $("login-username").focus();
}

async function login(event) {
  event.preventDefault();
  const form = event.target;
  $("login-submit").disabled = true;
  try {
    const body = { username: form.username.value.trim(), password: form.password.value };
    const result = await api("/auth/login", { method: "POST", body });
    session.token = result.access_token;
    await start();
  } catch (err) {
    $("login-error").textContent = err.status === 401 ? t("login.failed") : err.message;
  } finally {
    $("login-submit").disabled = false;
  }
}

async function logout() {
  try { await api("/auth/logout", { method: "POST" }); } catch { /* already gone */ }
  session.token = null;
  showLogin();
}

function init() {
  applyStatic();
  session.onLogout = () => showLogin(t("login.failed"));
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const b of document.querySelectorAll("[data-lang-toggle]")) {
    b.addEventListener("click", async () => {
      setLang(currentLang() === "zh" ? "en" : "zh");
      hideToast(); // its words are of the other language
      if (session.user) {
        $("who").textContent = `${session.user.display_name || session.user.username} · ${t(`role.${session.user.role}`)}`;
        await showPage();
      }
    });
  }
  $("district").addEventListener("change", () => {
    localStorage.setItem("clearday.district", $("district").value);
    refresh();
  });
  $("service-date").addEventListener("change", refresh);
  window.addEventListener("hashchange", () => session.user && showPage());
  $("modal").addEventListener("click", (e) => { if (e.target.id === "modal") closeModal(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeModal(); });
  if (session.token) start().catch(() => showLogin());
  else showLogin();
}

init();
