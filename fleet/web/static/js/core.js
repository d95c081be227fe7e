// Shared pieces: the API client (bearer token in sessionStorage), DOM building without
// innerHTML (names come from imported files), toasts, the modal, formatting.
import { currentLang, has, t } from "./i18n.js";

const TOKEN_KEY = "clearday.token";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  user: null,
  config: null,
  onLogout: () => {},
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problemText(status, problem));
    this.status = status;
    this.problem = problem;
  }
}

// "{name}" in a text filled from params.
function fill(text, params = {}) {
  return text.replace(/\{(\w+)\}/g, (_, name) => (params?.[name] ?? "") + "");
}

// A refusal as a person reads it (fleet/refusal.py): in English the server's own text; in
// Chinese the words of its code, never the server's English.
export function refusalText(code, params, english, fallback = t("err.value_invalid")) {
  if (currentLang() === "en") return english || fallback;
  return code && has(`err.${code}`) ? fill(t(`err.${code}`), params) : fallback;
}

// A field's problem without the field: the import table and the forms name the field
// themselves. A problem the page made itself (no code) is already in the UI's language.
export function fieldProblem(error) {
  if (!error.code) return error.message;
  const words = refusalText(error.code, error.params, error.message);
  const column = error.params?.column;
  return currentLang() === "zh" && column && !t(`err.${error.code}`).includes("{column}") ? `${column}：${words}` : words;
}

export function fieldProblemText(error) {
  if (currentLang() === "en") return `${error.field}: ${error.message}`;
  const field = has(`field.${error.field}`) ? t(`field.${error.field}`) : error.field;
  return `${field}：${fieldProblem(error)}`;
}

// The text of an error answer: its code's words, or its fields' problems when the code
// only says "invalid input".
export function problemText(status, problem) {
  const failed = fill(t("err.failed"), { status });
  if (!problem) return failed;
  if (currentLang() === "en") return problem.detail || failed;
  const fields = (problem.errors || []).map(fieldProblemText);
  if (fields.length && (problem.code === "invalid" || !has(`err.${problem.code}`))) return fields.join("；");
  return refusalText(problem.code, { ...problem.params, error_id: problem.error_id }, problem.detail, failed);
}

export async function api(path, { method = "GET", body, raw = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && path !== "/auth/login") {
    session.token = null;
    session.onLogout();
    throw new ApiError(401, { code: "login_failed", detail: t("login.failed") });
  }
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, problem);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export function qs(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") search.set(k, v);
  const text = search.toString();
  return text ? `?${text}` : "";
}

// h("div", {class: "x", onclick: fn}, "text", child, [more children])
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Leaflet renders a string given to bindTooltip / bindPopup as HTML, and names, plates
// and notes come from imported files: tooltips and popups get this text node instead.
export function textOf(value) {
  return document.createTextNode(String(value ?? ""));
}

export function clear(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

let toastTimer = 0;
export function toast(message, { error = false } = {}) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.classList.toggle("error", error);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, error ? 6000 : 2500);
}

export function hideToast() {
  clearTimeout(toastTimer);
  document.getElementById("toast").hidden = true;
}

export function showError(err) {
  console.error(err);
  toast(err instanceof ApiError ? err.message : String(err), { error: true });
}

export function openModal(...content) {
  const modal = document.getElementById("modal");
  clear(document.getElementById("modal-body"), content);
  modal.hidden = false;
}

export function closeModal() {
  document.getElementById("modal").hidden = true;
}

export function can(...roles) {
  return session.user && roles.includes(session.user.role);
}

const locale = () => (currentLang() === "zh" ? "zh-CN" : "en-GB");

export function fmtTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleTimeString(locale(), {
    hour: "2-digit", minute: "2-digit", hour12: false, timeZone: session.config?.timezone,
  });
}

export function fmtDateTime(iso) {
  if (!iso) return "—";
  return new Date(iso).toLocaleString(locale(), {
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
    timeZone: session.config?.timezone,
  });
}

export const fmtKm = (m) => `${(m / 1000).toFixed(1)} ${t("common.km")}`;
export const fmtHours = (s) => `${(s / 3600).toFixed(1)} ${t("common.h")}`;
export const fmtPct = (x) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`);

// An age from the server's clock and the browser's: a browser clock ahead of or behind
// the server must not show a negative age.
export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 5) return t("common.just_now");
  if (seconds < 120) return `${Math.round(seconds)} ${t("live.ago_s")}`;
  return `${Math.round(seconds / 60)} ${t("live.ago_min")}`;
}

export function chosenDay() {
  // The district and service date chosen in the top bar, as the person sees them now
  // (a page's own context catches up only when its refresh runs).
  return { district: document.getElementById("district").value, date: document.getElementById("service-date").value };
}

export function todayIn(timezone) {
  // The service date "today" in the district's time zone, as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", { timeZone: timezone }).format(new Date());
}

export function addDays(isoDate, days) {
  const d = new Date(`${isoDate}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

// Twelve colours far apart in hue and lightness, none grey (the roads are grey); past
// twelve routes the colours repeat with a dashed line, so no two routes look alike.
export const PALETTE = [
  "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
  "#e377c2", "#17becf", "#bcbd22", "#1b1b1b", "#f0027f", "#66a61e",
];
export const routeColour = (i) => PALETTE[i % PALETTE.length];
export const routeDash = (i) => (i >= PALETTE.length ? "10 6" : null);

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 120) return `${Math.round(seconds)} ${t("evidence.s")}`;
  return `${Math.round(seconds / 60)} ${t("common.min")}`;
}

// Plates by truck id for a district: a person reads a truck by its plate.
const plateCache = new Map();
export async function trucksOf(districtId) {
  if (!plateCache.has(districtId)) {
    plateCache.set(districtId, api(`/trucks${qs({ district_id: districtId, limit: 1000 })}`)
      .then((page) => page.items)
      .catch((err) => { plateCache.delete(districtId); throw err; }));
  }
  return plateCache.get(districtId);
}
export async function platesOf(districtId) {
  return new Map((await trucksOf(districtId)).map((truck) => [truck.truck_id, truck.plate]));
}
export function forgetTrucks() {
  plateCache.clear();
}

// A table with a header row: columns are [label, cell(row)] pairs.
export function table(rows, columns, rowAttrs = () => ({}), attrs = {}) {
  return h("table", { class: "list", ...attrs },
    h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", {}, label)))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttrs(row), columns.map(([, cell]) => h("td", {}, cell(row)))))));
}

// Save a response body as a file (CSV exports).
export async function download(path, filename) {
  const response = await api(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// Local midnight of a service date in a time zone, as ISO 8601 with its offset.
export function midnightIso(isoDate, timezone) {
  const probe = new Date(`${isoDate}T12:00:00Z`);
  const part = new Intl.DateTimeFormat("en-US", { timeZone: timezone, timeZoneName: "longOffset" })
    .formatToParts(probe).find((p) => p.type === "timeZoneName");
  const name = part ? part.value : "GMT";
  return `${isoDate}T00:00:00${name === "GMT" ? "+00:00" : name.slice(3)}`;
}
