// Civitas insights console: the token, the JSON API, formatting, charts, and the
// four pages (district, community, member, case). Each page's <body data-page> says
// which one runs. The page marks <body data-loaded="true"> once its data is shown,
// and each chart's container data-chart-ready="true" once the chart has drawn.
/* global Chart */

const TOKEN_KEY = "civitas.token";
const COLORS = {
  received: "#c0392b",
  resolved: "#2e86de",
  hours: "#27ae60",
  allocated: "#e67e22",
  disbursed: "#8e44ad",
};

// ---- token and API -------------------------------------------------------

/**
 * Keep a #token= from the address in sessionStorage and take it out of the address bar
 * and of this history entry. A fragment never reaches the server, nor a Referer header.
 * A ?token= in the query is never used (the server ignores it too): it is only taken
 * out of the bar. True when the address carried one there.
 */
function takeToken() {
  const url = new URL(location.href);
  const given = new URLSearchParams(url.hash.slice(1)).get("token");
  const queried = url.searchParams.has("token");
  if (given) sessionStorage.setItem(TOKEN_KEY, given);
  if (given || queried) {
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + (given ? "" : url.hash));
  }
  return queried;
}

class ApiError extends Error {
  constructor(path, status, message) {
    super(`${path}: ${status} ${message}`);
    this.status = status;
  }
}

async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) sessionStorage.removeItem(TOKEN_KEY);
    throw new ApiError(path, response.status, body.error || response.statusText);
  }
  return body;
}

const segment = (value) => encodeURIComponent(value);

/** The last part of the page's path: /community/QH-03-07 → QH-03-07. */
function pathId() {
  return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
}

// ---- showing things ------------------------------------------------------

/** An element with attributes and children (strings become text, never HTML). */
function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) element.setAttribute(name, value);
  }
  element.append(...children.flat().filter((c) => c !== undefined && c !== null));
  return element;
}

/** Why the page has no data, how to get a token, and a form to paste one into. */
function askForToken(why) {
  const reasons = {
    missing: "需要访问令牌 This console needs a token.",
    rejected: "令牌无效或已过期 The token was refused.",
    queried: "地址中的 ?token= 不被接受 A token in the address's query (?token=) is not accepted.",
  };
  const form = h(
    "form",
    { id: "sign-in", class: "sign-in" },
    h("label", {}, "令牌 Token ", h("input", { name: "token", type: "password", autocomplete: "off", required: "" })),
    h("button", {}, "打开 Open"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = form.elements.token.value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    location.reload();
  });
  const notice = document.getElementById("notice");
  notice.replaceChildren(
    h("strong", {}, reasons[why]),
    h("p", {}, "Open the console address that ", h("code", {}, "civitas up"),
      " prints (it ends in ", h("code", {}, "#token=…"), "), or mint a token with ",
      h("code", {}, "civitas token --role auditor"), " and paste it here (it is kept in this tab only):"),
    form,
  );
  notice.hidden = false;
}

function showError(error) {
  if (error instanceof ApiError && error.status === 401) askForToken("rejected");
  const box = document.getElementById("error");
  box.append(h("p", {}, error instanceof ApiError ? `API ${error.message}` : `Error: ${error}`));
  box.hidden = false;
  document.body.dataset.error = "true";
}

const num = (value) => Number(value ?? 0);
const count = (value) => num(value).toLocaleString("zh-CN");
const yuan = (fen) =>
  (num(fen) < 0 ? "-¥" : "¥") +
  Math.abs(num(fen) / 100).toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const hours = (tenths) => (num(tenths) / 10).toLocaleString("zh-CN", { maximumFractionDigits: 1 });
const percent = (rate) => `${(num(rate) * 100).toFixed(1)}%`;
const when = (timestamp) =>
  timestamp ? new Date(timestamp).toLocaleString("zh-CN", { hour12: false }) : "—";
/** "2026-03" → "3月", with the year under the first month and under each January. */
const monthLabels = (points) =>
  points.map(({ month }, i) => {
    const [year, m] = month.split("-");
    return i === 0 || m === "01" ? [`${Number(m)}月`, year] : `${Number(m)}月`;
  });

function figures(target, items) {
  target.replaceChildren(
    ...items.map(([label, value, note]) =>
      h("div", { class: "figure" }, h("dt", {}, label), h("dd", {}, value, note ? h("small", {}, ` ${note}`) : null)),
    ),
  );
}

/** A table from column specs [heading, cell(row), numeric?]; a note when there are no rows. */
function table(columns, rows, empty = "暂无 None yet") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map(([heading, , numeric]) => h("th", { class: numeric ? "num" : null }, heading)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell, numeric]) => h("td", { class: numeric ? "num" : null }, cell(row)))))),
  );
}

function scorecardFigures(card) {
  const rated = num(card.satisfaction_ratings);
  return [
    ["收到诉求 Requests received", count(card.requests_received)],
    ["未办结 Open", count(card.requests_open)],
    ["超期 Overdue", count(card.requests_overdue)],
    ["已办结 Resolved", count(card.requests_resolved)],
    ["办结率 Resolution rate", percent(card.resolution_rate)],
    ["办结用时中位数 Median time to resolve", num(card.median_hours_to_resolve).toFixed(1), "h"],
    ["满意度 Satisfaction", rated ? num(card.satisfaction).toFixed(2) : "—", `/ 5 (${rated} 评 ratings)`],
    ["志愿服务 Volunteer hours", hours(card.volunteer_tenths_of_hours), "h"],
    ["拨入资金 Funds allocated", yuan(card.funds_allocated_fen)],
    ["已承诺 Committed", yuan(card.funds_committed_fen)],
    ["已支出 Disbursed", yuan(card.funds_disbursed_fen)],
    ["余额 Balance", yuan(card.funds_balance_fen)],
    ["党员 Party members", count(card.party_members)],
    ["在职党员报到 Working members reported", count(card.working_members_reported)],
    ["人口 Population", card.population ? count(card.population) : "—"],
  ];
}

// ---- charts --------------------------------------------------------------

/** Draw a Chart.js chart in a [data-chart] container; mark it ready after it has drawn. */
function chart(name, config) {
  const container = document.querySelector(`[data-chart="${name}"]`);
  const canvas = h("canvas", { role: "img", "aria-label": name });
  container.replaceChildren(canvas);
  const ready = { id: "civitasReady", afterRender: () => (container.dataset.chartReady = "true") };
  return new Chart(canvas, {
    ...config,
    options: {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom" } },
      ...config.options,
    },
    plugins: [ready],
  });
}

/** Month labels kept level (Chart.js skips some when narrow), and the given y axes. */
const axes = (y) => ({ x: { ticks: { maxRotation: 0, autoSkipPadding: 6 } }, ...y });

const series = (label, data, color, extra = {}) => ({
  label,
  data,
  backgroundColor: color,
  borderColor: color,
  ...extra,
});

// ---- pages ---------------------------------------------------------------

function scorecardRows(cards, link) {
  return table(
    [
      ["名称 Name", (c) => h("a", { href: link(c) }, c.unit_name || c.unit_code)],
      ["代码 Code", (c) => h("code", {}, c.unit_code)],
      ["收到 Received", (c) => count(c.requests_received), true],
      ["未办结 Open", (c) => count(c.requests_open), true],
      ["超期 Overdue", (c) => count(c.requests_overdue), true],
      ["办结率 Rate", (c) => percent(c.resolution_rate), true],
      ["满意度 Satisfaction", (c) => (num(c.satisfaction_ratings) ? num(c.satisfaction).toFixed(2) : "—"), true],
      ["志愿时长 Hours", (c) => hours(c.volunteer_tenths_of_hours), true],
      ["已支出 Disbursed", (c) => yuan(c.funds_disbursed_fen), true],
      ["余额 Balance", (c) => yuan(c.funds_balance_fen), true],
      ["党员 Members", (c) => count(c.party_members), true],
    ],
    cards,
  );
}

async function districtPage() {
  const street = new URLSearchParams(location.search).get("street");
  const [{ scorecard }, { scorecards }, { points }] = await Promise.all([
    api("/api/scorecards/QH"),
    api("/api/scorecards/QH/children"),
    api("/api/scorecards/QH/trend?months=12"),
  ]);
  document.getElementById("title").textContent = `${scorecard.unit_name || "秦淮区"} 区概览 District overview`;
  figures(document.getElementById("figures"), scorecardFigures(scorecard));
  document.getElementById("streets").replaceChildren(
    scorecardRows(scorecards, (c) => `/?street=${segment(c.unit_code)}#communities`),
  );
  for (const row of document.querySelectorAll("#streets tbody tr")) {
    if (row.querySelector("code").textContent === street) row.classList.add("selected");
  }
  chart("district-trend", {
    data: {
      labels: monthLabels(points),
      datasets: [
        series("收到 Received", points.map((p) => num(p.requests_received)), COLORS.received, { type: "bar" }),
        series("办结 Resolved", points.map((p) => num(p.requests_resolved)), COLORS.resolved, { type: "bar" }),
        series("志愿时长 Volunteer hours", points.map((p) => num(p.volunteer_tenths_of_hours) / 10), COLORS.hours, {
          type: "line",
          yAxisID: "hours",
        }),
      ],
    },
    options: {
      scales: axes({
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "件 requests" } },
        hours: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "h" } },
      }),
    },
  });
  if (street) await streetCommunities(street);
}

async function streetCommunities(street) {
  const [{ scorecard }, { scorecards }] = await Promise.all([
    api(`/api/scorecards/${segment(street)}`),
    api(`/api/scorecards/${segment(street)}/children`),
  ]);
  document.getElementById("communities-title").textContent =
    `${scorecard.unit_name || street} 的社区 Communities of ${street}`;
  document.getElementById("communities-table").replaceChildren(
    scorecardRows(scorecards, (c) => `/community/${segment(c.unit_code)}`),
  );
  const section = document.getElementById("communities");
  section.hidden = false;
  section.scrollIntoView();
}

async function communityPage() {
  const code = pathId();
  const street = code.split("-").slice(0, 2).join("-");
  const account = `fund:${code}:special`;
  const [{ scorecard }, { points }] = await Promise.all([
    api(`/api/scorecards/${segment(code)}`),
    api(`/api/scorecards/${segment(code)}/trend?months=12`),
  ]);
  const name = scorecard.unit_name || code;
  document.title = `${name} · Civitas`;
  document.getElementById("title").textContent = `${name} (${code})`;
  document.getElementById("crumbs").replaceChildren(
    h("a", { href: "/" }, "秦淮区 District"),
    h("a", { href: `/?street=${segment(street)}#communities` }, `街道 Street ${street}`),
    h("span", {}, name),
  );
  figures(document.getElementById("figures"), scorecardFigures(scorecard));
  const labels = monthLabels(points);
  chart("requests", {
    type: "bar",
    data: {
      labels,
      datasets: [
        series("收到 Received", points.map((p) => num(p.requests_received)), COLORS.received),
        series("办结 Resolved", points.map((p) => num(p.requests_resolved)), COLORS.resolved),
      ],
    },
    options: { scales: axes({ y: { beginAtZero: true, ticks: { precision: 0 } } }) },
  });
  chart("volunteer-hours", {
    type: "bar",
    data: {
      labels,
      datasets: [series("志愿时长 Hours", points.map((p) => num(p.volunteer_tenths_of_hours) / 10), COLORS.hours)],
    },
    options: { scales: axes({ y: { beginAtZero: true } }) },
  });
  chart("funds", {
    type: "bar",
    data: {
      labels,
      datasets: [
        series("拨入 Allocated", points.map((p) => num(p.funds_allocated_fen) / 100), COLORS.allocated),
        series("支出 Disbursed", points.map((p) => num(p.funds_disbursed_fen) / 100), COLORS.disbursed),
      ],
    },
    options: { scales: axes({ y: { beginAtZero: true } }) },
  });
  await fundStatement(account);
}

async function fundStatement(account) {
  document.getElementById("fund-account").textContent = account;
  let statement;
  try {
    ({ statement } = await api(`/api/funds/${segment(account)}/statement`));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
    document.getElementById("fund-entries").replaceChildren(
      h("p", { class: "empty" }, "该社区尚无专项资金账户 No special fund account yet."),
    );
    return;
  }
  figures(document.getElementById("fund-figures"), [
    ["账户 Account", statement.name || statement.account_id],
    ["余额 Balance", yuan(statement.balance_fen)],
    ["预留 Reserved", yuan(statement.reserved_fen)],
    ["笔数 Entries", count(statement.entries.length)],
  ]);
  const newest = [...statement.entries].reverse().slice(0, 50);
  const shown = [
    table(
      [
        ["记账时间 Booked", (e) => when(e.booked_at)],
        ["摘要 Memo", (e) => e.memo],
        ["对方账户 Counterpart", (e) => h("code", {}, e.counterpart_account)],
        ["金额 Amount", (e) => yuan(e.amount_fen), true],
        ["余额 Balance after", (e) => yuan(e.balance_fen), true],
      ],
      newest,
      "暂无记账 No entries yet",
    ),
  ];
  if (statement.entries.length > newest.length) {
    shown.push(h("p", { class: "subtitle" }, `最近 ${newest.length} 笔 The newest ${newest.length} of ${statement.entries.length} entries.`));
  }
  document.getElementById("fund-entries").replaceChildren(...shown);
}

/** A community's code, or a grid's (QH-03-07-G02), as a link to the community's page. */
function unitLink(code) {
  const parts = (code || "").split("-");
  if (parts.length < 3) return code || "—";
  return h("a", { href: `/community/${segment(parts.slice(0, 3).join("-"))}` }, code);
}
// party_orgs' card activity kinds and appraisal ratings; anything else shows as it came.
const KINDS = {
  volunteer_service: "志愿服务 volunteer service",
  meeting: "组织生活 meeting",
  community_service: "社区服务 community service",
};
const RATINGS = {
  excellent: "优秀 excellent",
  competent: "合格 competent",
  basically_competent: "基本合格 basically competent",
  incompetent: "不合格 incompetent",
};

async function memberPage() {
  const { card } = await api(`/api/members/${segment(pathId())}/card`);
  document.title = `${card.member_number} · Civitas`;
  document.getElementById("title").textContent = `党员 ${card.member_number} 一卡两表 Member card`;
  figures(document.getElementById("figures"), [
    ["党员编号 Member number", card.member_number],
    ["党组织 Organization", card.org_name || card.org_id || "—"],
    ["所在单位 Unit", unitLink(card.unit_code)],
    ["在职党员 Working member", card.working ? "是 yes" : "否 no"],
    ["报到社区 Reports to", unitLink(card.reports_to)],
    ["志愿服务 Volunteer hours", hours(card.volunteer_tenths_of_hours), "h"],
    ["群众评价 Mean feedback", card.feedback.length ? num(card.mean_feedback_rating).toFixed(2) : "—", `/ 5 (${card.feedback.length})`],
  ]);
  document.getElementById("activities").replaceChildren(
    table(
      [
        ["时间 When", (e) => when(e.occurred_at)],
        ["类别 Kind", (e) => KINDS[e.kind] || e.kind],
        ["内容 Description", (e) => e.description],
        ["时长 Hours", (e) => hours(e.tenths_of_hours), true],
      ],
      card.activities,
      "暂无活动 No activities yet",
    ),
  );
  document.getElementById("feedback").replaceChildren(
    table(
      [
        ["时间 When", (f) => when(f.recorded_at)],
        ["评分 Rating", (f) => `${"★".repeat(num(f.rating))}${"☆".repeat(Math.max(0, 5 - num(f.rating)))}`],
        ["意见 Comment", (f) => f.comment],
      ],
      card.feedback,
      "暂无评价 No feedback yet",
    ),
  );
  document.getElementById("appraisals").replaceChildren(
    table([["年度 Year", (a) => String(a.year)], ["评议结果 Rating", (a) => RATINGS[a.rating] || a.rating]], card.appraisals, "暂无评议 No appraisals yet"),
  );
}

const STATUSES = {
  registered: "已登记 registered",
  classified: "已分类 classified",
  filed: "已立案 filed",
  dispatched: "已派单 dispatched",
  in_progress: "办理中 in progress",
  in_mediation: "调解中 in mediation",
  resolved: "已办结 resolved",
  followed_up: "已回访 followed up",
  closed: "已结案 closed",
  merged: "已合并 merged",
  rejected: "不予受理 rejected",
  withdrawn: "已撤回 withdrawn",
};
/** STATUS_IN_PROGRESS or in_progress → 办理中 in progress; anything else as it came. */
function status(value) {
  const key = String(value || "").replace(/^STATUS_/, "").toLowerCase();
  return STATUSES[key] || value || "—";
}

function details(json) {
  let fields;
  try {
    fields = JSON.parse(json || "{}");
  } catch {
    return h("pre", {}, json);
  }
  const shown = (value) => (typeof value === "string" ? value : JSON.stringify(value));
  return h("dl", { class: "details" }, Object.entries(fields).flatMap(([key, value]) => [h("dt", {}, key), h("dd", {}, shown(value))]));
}

async function casePage() {
  const { timeline } = await api(`/api/cases/${segment(pathId())}/timeline`);
  document.getElementById("title").textContent = `案件 Case ${timeline.case_id}`;
  document.getElementById("crumbs").replaceChildren(
    h("a", { href: "/" }, "秦淮区 District"),
    unitLink(timeline.community_code),
    h("span", {}, "案件 Case"),
  );
  figures(document.getElementById("figures"), [
    ["状态 Status", status(timeline.status)],
    ["社区 Community", unitLink(timeline.community_code)],
    ["事件 Events", count(timeline.entries.length)],
  ]);
  document.getElementById("timeline").replaceChildren(
    ...timeline.entries.map((entry) =>
      h(
        "li",
        { "data-type": entry.type },
        h("div", {}, h("span", { class: "type" }, entry.type), " ", h("span", { class: "pill" }, `v${entry.version}`)),
        h(
          "div",
          { class: "meta" },
          h("time", { datetime: entry.occurred_at }, when(entry.occurred_at)),
          ` · 操作人 actor ${entry.actor || "—"} · 关联 correlation `,
          h("code", {}, entry.correlation_id || "—"),
        ),
        details(entry.details_json),
      ),
    ),
  );
  if (!timeline.entries.length) document.getElementById("timeline").append(h("li", { class: "empty" }, "暂无事件 No events"));
}

// ---- start ---------------------------------------------------------------

function lookup() {
  const form = document.getElementById("lookup");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = form.elements.id.value.trim();
    if (id) location.href = `/${event.submitter?.value === "case" ? "case" : "member"}/${segment(id)}`;
  });
}

const PAGES = { district: districtPage, community: communityPage, member: memberPage, case: casePage };

async function start() {
  lookup();
  const queried = takeToken();
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    askForToken(queried ? "queried" : "missing");
    return;
  }
  try {
    await PAGES[document.body.dataset.page]();
    document.body.dataset.loaded = "true";
  } catch (error) {
    showError(error);
  }
}

start();
