// idgate agent screen-pop: the live call list (/agent) and one call (/agent/calls/{id}).
//
// Plain ES2020, no dependencies, no build step. The pages run under the Content-Security-Policy
// `default-src 'self'`: no inline code or styles, no eval. Data reaches the page only through
// textContent and attributes, never as markup. Every text the agent reads is in STRINGS.
'use strict';

// ---------------------------------------------------------------------------------------------
// Texts (one place, for translation to Swedish later).

const STRINGS = {
  locale: 'en-GB', // times and numbers; 24-hour clock
  appName: 'idgate',
  listTitle: 'Calls – idgate',
  listTitleWithCount: (n) => `(${n}) Calls – idgate`,
  listHeading: 'Calls',
  callListLabel: 'Calls, newest first',
  skipToCalls: 'Skip to the calls',
  skipToCall: 'Skip to the call',
  backToList: '← All calls',
  noCalls: 'No calls in the last 15 minutes. New calls appear here by themselves.',
  callHeadingLoading: 'Call',
  callHeading: (caller) => `Call from ${caller}`,
  callTitle: (verdict, caller) => `${verdict} · ${caller} – idgate`,
  callNotFound:
    'idgate does not know this call (calls are kept for 15 minutes after they end). ' +
    'Check the link, or go back to all calls.',

  connection: {
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    'signed-out': 'Not signed in',
  },
  signedOut: 'Not signed in: open the link with ?token=… from your administrator.',
  loadError: (detail) => `Could not load the calls: ${detail}. The page keeps trying.`,

  status: {
    pending: 'Identifying…',
    verified: 'Verified',
    unverified: 'Unverified',
    abandoned: 'Not identified', // ended before identification finished
  },
  abandonedReason: 'The call ended before identification finished',
  // X-Identity-Reason tokens in plain words (shared/IDENTITY-HEADERS.md).
  reasons: {
    'not-found': 'Caller number is not in the customer directory',
    anonymous: 'Caller withheld their number and typed no personal identity number',
    'invalid-input': 'The personal identity number typed on the keypad was not valid',
    declined: 'The person cancelled the identification in the app',
    'not-in-call': 'Said they are not in a call with us (possible fraud)',
    timeout: 'No answer in the app in time',
    mismatch: 'Someone other than the registered customer identified (possible fraud)',
    'rate-limited': 'Too many identification requests recently (push limit reached)',
    'provider-error': 'The eID service failed or could not be reached',
    skipped: 'Not identified: this line does not identify, or the caller skipped it',
  },
  unknownReason: (token) => `Reason: ${token}`,
  alarmPrefix: 'Warning',
  methods: {
    bankid: 'BankID',
    freja: 'Freja eID',
    'app-push': 'Company app',
    simulator: 'Simulator (test)',
  },
  phases: {
    identifying: 'Identifying',
    'handing-off': 'Transferring to an agent',
    'with-agent': 'With an agent',
    ended: 'Ended',
  },
  // What an ended call came to (shown instead of the phase once the call has ended).
  outcomes: {
    connected: 'Ended after talking to an agent',
    referred: 'Handed to the PBX by transfer (REFER)',
    abandoned: 'Ended: the caller hung up before reaching an agent',
    'queue-unavailable': 'Ended: no agent was available',
  },
  modes: {
    b2bua: 'Bridged by idgate',
    refer: 'Transferred by REFER',
  },
  anonymousCaller: 'Anonymous caller',
  waiting: 'Waiting',
  waited: 'Waited',
  started: (time) => `Called ${time}`,
  openCall: 'Open call',
  openCallLabel: (caller, time) => `Open the call from ${caller} at ${time}`,
  reverifiedAt: (time) => `Re-verified ${time}`,
  reverifyFailedAt: (time) => `Re-verification failed ${time}`,
  rowReverifyPending: 'Verifying again: waiting for the caller…',

  verdictHeading: 'Identification',
  verdictFromCallStart: 'Identification when the call came in',
  verdictFromReverify: (time) => `Result of the re-verification at ${time}`,
  originalHeading: 'Identification when the call came in',
  detailsHeading: 'Details',
  details: {
    caller: 'Caller',
    name: 'Name',
    subject: 'Personal identity number',
    method: 'Method',
    called: 'Called number',
    route: 'Route',
    mode: 'Hand-off',
    phase: 'Now',
    wait: 'Waiting time',
    started: 'Call started',
    decided: 'Identification done',
    connected: 'Connected to an agent',
    ended: 'Call ended',
    outcome: 'Outcome',
    id: 'Call id',
  },

  reverifyHeading: 'Verify again',
  reverifyButton: 'Verify again',
  reverifySending: 'Sending…',
  personalNumberLabel: 'Personal identity number (optional)',
  personalNumberHint:
    '12 digits, YYYYMMDDNNNN. Leave empty to send the request to the person idgate already ' +
    'knows for this call.',
  reverify: {
    none: 'Not verified again during this call.',
    pending: (time) => `Waiting for the caller to confirm in the app… (sent ${time})`,
    verified: (time, who) => `Verified at ${time}${who ? `: ${who}` : ''}.`,
    unverified: (time, why) => `Not verified at ${time}: ${why}.`,
  },
  reverifyUnavailable: {
    ended: 'The call has ended.',
    pending: 'A verification is already running.',
    notWithAgent: 'Possible once the caller is connected to an agent.',
    other: 'Verifying again is not possible for this call right now.',
  },
  errors: {
    badPersonalNumber: 'Type 12 digits (YYYYMMDDNNNN), or leave the field empty.',
    notFound: 'idgate no longer knows this call.',
    http: (status) => `idgate answered with an error (HTTP ${status}). Try again.`,
    network: 'Could not reach idgate. Check the connection and try again.',
  },
  announce: {
    newCall: (caller, verdict) => `New call from ${caller}: ${verdict}`,
    changed: (caller, verdict) => `Call from ${caller}: ${verdict}`,
  },
};

// ---------------------------------------------------------------------------------------------
// The backend contract.

const API = {
  calls: '/agent/api/calls',
  call: (id) => `/agent/api/calls/${encodeURIComponent(id)}`,
  reverify: (id) => `/agent/api/calls/${encodeURIComponent(id)}/reverify`,
  events: '/agent/api/events',
  page: (id) => `/agent/calls/${encodeURIComponent(id)}`,
};

/** Calls that ended longer ago than this are dropped from the list (the backend's window). */
const KEEP_ENDED_MS = 15 * 60 * 1000;
/** Reasons shown in the alarming style: both are fraud signals. */
const ALARM_REASONS = new Set(['not-in-call', 'mismatch']);

// ---------------------------------------------------------------------------------------------
// Small helpers.

/** An element with a class, text and attributes; children appended. Text is set as text only. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) if (child) el.append(child);
  return el;
}

/** Sets text only when it changed (keeps live regions from repeating themselves). */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function byId(id) {
  return document.getElementById(id);
}

/** Offset of the server's clock from ours (from the HTTP Date header), so waiting times do not
 *  drift with a badly set agent PC clock. Only used when it is more than 2 s. */
let clockOffsetMs = 0;
function noteServerClock(response) {
  const date = Date.parse(response.headers.get('Date') || '');
  if (!Number.isFinite(date)) return;
  const offset = date - Date.now();
  clockOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
}
function now() {
  return Date.now() + clockOffsetMs;
}

function parseTime(text) {
  const t = text ? Date.parse(text) : NaN;
  return Number.isFinite(t) ? t : null;
}

const timeFormat = new Intl.DateTimeFormat(STRINGS.locale, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});
function clock(text) {
  const t = parseTime(text);
  return t === null ? '' : timeFormat.format(new Date(t));
}

/** 0:07, 12:34, 1:02:03. */
function duration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const s = total % 60;
  const m = Math.floor(total / 60) % 60;
  const hours = Math.floor(total / 3600);
  const pad = (n) => String(n).padStart(2, '0');
  return hours > 0 ? `${hours}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** "Waiting 0:42" (live) or "Waited 0:42" (fixed once connected or ended). */
function waitTime(call) {
  const started = parseTime(call.started_at);
  if (started === null) return { live: false, label: STRINGS.waited, text: '' };
  const until = parseTime(call.connected_at) ?? parseTime(call.ended_at);
  if (until !== null) return { live: false, label: STRINGS.waited, text: duration(until - started) };
  return { live: true, label: STRINGS.waiting, text: duration(now() - started) };
}

function callerText(call) {
  return !call.caller || call.caller === 'anonymous' ? STRINGS.anonymousCaller : call.caller;
}

function reasonText(reason) {
  if (!reason) return '';
  return STRINGS.reasons[reason] || STRINGS.unknownReason(reason);
}

function phaseText(call) {
  if (call.phase === 'ended' && call.outcome && STRINGS.outcomes[call.outcome]) {
    return STRINGS.outcomes[call.outcome];
  }
  return STRINGS.phases[call.phase] || call.phase || '';
}

function personText(v) {
  return [v.name, v.subject].filter(Boolean).join(', ');
}

/** Name and masked personal identity number, each kept on one line. */
function renderPerson(el, v) {
  const text = personText(v);
  el.hidden = !text;
  if (el.dataset.text === text) return;
  el.dataset.text = text;
  const parts = [];
  if (v.name) parts.push(h('span', { class: 'person-name', text: v.name }));
  if (v.name && v.subject) parts.push(' ');
  if (v.subject) parts.push(h('span', { class: 'person-subject', text: v.subject }));
  el.replaceChildren(...parts);
}

// ---------------------------------------------------------------------------------------------
// The verdict an agent should act on: the latest finished re-verification, else the verdict
// idgate reached when the call came in.

/** Last finished re-verification per call, kept while a newer one is pending. */
const lastFinishedReverify = new Map();

function isFinished(reverify) {
  return Boolean(reverify) && (reverify.status === 'verified' || reverify.status === 'unverified');
}

function originalVerdict(call) {
  return {
    status: call.status,
    reason: call.reason,
    method: call.method,
    name: call.name,
    subject: call.subject,
    at: call.decided_at,
    fromReverify: false,
    ended: call.phase === 'ended',
  };
}

function currentVerdict(call) {
  const finished = isFinished(call.reverify) ? call.reverify : lastFinishedReverify.get(call.id);
  if (!finished) return originalVerdict(call);
  return {
    status: finished.status,
    reason: finished.reason,
    method: finished.method,
    name: finished.name,
    subject: finished.subject,
    at: finished.completed_at,
    fromReverify: true,
    ended: call.phase === 'ended',
  };
}

/** The badge's words: label and plain-language detail. */
function verdictWords(v) {
  if (v.status === 'verified') return { kind: 'verified', label: STRINGS.status.verified, detail: '' };
  if (v.status === 'unverified') {
    const alarm = ALARM_REASONS.has(v.reason);
    return {
      kind: alarm ? 'alarm' : 'unverified',
      label: STRINGS.status.unverified,
      detail: reasonText(v.reason),
    };
  }
  if (v.ended) return { kind: 'abandoned', label: STRINGS.status.abandoned, detail: STRINGS.abandonedReason };
  return { kind: 'pending', label: STRINGS.status.pending, detail: '' };
}

function verdictSentence(v) {
  const words = verdictWords(v);
  return words.detail ? `${words.label}: ${words.detail}` : words.label;
}

const BADGE_ICONS = { verified: '✔', unverified: '✖', alarm: '⚠', pending: '●', abandoned: '–' };

/** Fills a badge element (`data-testid="status"` and the like) for verdict `v`. */
function renderBadge(el, v) {
  const words = verdictWords(v);
  const signature = `${words.kind}|${v.status}|${v.reason}|${words.label}|${words.detail}`;
  if (el.dataset.signature === signature) return;
  el.dataset.signature = signature;
  el.dataset.status = v.status || '';
  el.dataset.reason = v.reason || '';
  el.classList.remove(...['verified', 'unverified', 'alarm', 'pending', 'abandoned'].map((k) => `badge--${k}`));
  el.classList.add(`badge--${words.kind}`);
  const children = [
    h('span', { class: 'badge-icon', 'aria-hidden': 'true', text: BADGE_ICONS[words.kind] }),
    h('span', { class: 'badge-label', text: words.label }),
  ];
  if (words.kind === 'alarm') {
    children.push(h('span', { class: 'visually-hidden', text: `${STRINGS.alarmPrefix}: ` }));
  }
  if (words.detail) children.push(h('span', { class: 'badge-reason', text: words.detail }));
  el.replaceChildren(...children);
}

// ---------------------------------------------------------------------------------------------
// Fetching, errors, sign-in.

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function errorFrom(response) {
  let message = '';
  try {
    const body = await response.json();
    if (body && typeof body.error === 'string') message = body.error;
  } catch (_) {
    // not JSON: the status says enough
  }
  return new HttpError(response.status, message);
}

async function request(url, options = {}) {
  const response = await fetch(url, {
    credentials: 'same-origin',
    cache: 'no-store',
    ...options,
    headers: { Accept: 'application/json', ...(options.headers || {}) },
  });
  noteServerClock(response);
  if (response.status === 401) showSignedOut();
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

let signedOut = false;
function showSignedOut() {
  signedOut = true;
  const el = byId('signed-out');
  setText(el, STRINGS.signedOut);
  el.hidden = false;
  setConnection('signed-out');
}

/** The sign-in link carries the token; once the backend has set its cookie, take the token out
 *  of the address bar (and so out of the history, bookmarks and screenshots). */
function forgetTokenInUrl() {
  const url = new URL(window.location.href);
  if (!url.searchParams.has('token')) return;
  url.searchParams.delete('token');
  window.history.replaceState(window.history.state, '', url.pathname + url.search + url.hash);
}

function setConnection(state) {
  const el = byId('connection');
  if (signedOut) state = 'signed-out';
  el.dataset.state = state;
  setText(el, STRINGS.connection[state] || '');
}

function showLoadError(error) {
  const el = byId('load-error');
  if (!error || signedOut) {
    el.hidden = true;
    return;
  }
  const detail = error instanceof HttpError ? `HTTP ${error.status}` : STRINGS.errors.network;
  setText(el, STRINGS.loadError(detail));
  el.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Call state: SSE events and REST snapshots, merged by id.

function isCallView(value) {
  return Boolean(value) && typeof value === 'object' && typeof value.id === 'string' && value.id !== '';
}

class CallStore {
  constructor(onChange) {
    this.calls = new Map();
    this.eventAt = new Map(); // id -> performance.now() of its last SSE event
    this.onChange = onChange;
  }

  /** An SSE `call` event: always the newest state of that call. */
  applyEvent(call) {
    this.eventAt.set(call.id, performance.now());
    this.put(call);
  }

  /**
   * A REST answer requested at `requestedAt`. An SSE event that arrived after the request was
   * sent is at least as new as the answer, so it wins; `complete` (the whole list) also drops
   * calls the backend no longer lists.
   */
  applySnapshot(calls, requestedAt, complete) {
    const listed = new Set();
    for (const call of calls) {
      listed.add(call.id);
      if ((this.eventAt.get(call.id) ?? -Infinity) > requestedAt) continue;
      this.put(call);
    }
    if (!complete) return;
    for (const id of [...this.calls.keys()]) {
      if (!listed.has(id) && (this.eventAt.get(id) ?? -Infinity) <= requestedAt) this.remove(id);
    }
  }

  put(call) {
    const previous = this.calls.get(call.id);
    // Every change on the server bumps `version`: an older copy never replaces a newer one.
    if (previous && Number(call.version) < Number(previous.version)) return;
    if (isFinished(call.reverify)) lastFinishedReverify.set(call.id, call.reverify);
    this.calls.set(call.id, call);
    this.onChange(call, previous);
  }

  remove(id) {
    const previous = this.calls.get(id);
    this.calls.delete(id);
    this.eventAt.delete(id);
    lastFinishedReverify.delete(id);
    if (previous) this.onChange(null, previous);
  }

  /** Newest first. */
  sorted() {
    return [...this.calls.values()].sort(
      (a, b) => (parseTime(b.started_at) ?? 0) - (parseTime(a.started_at) ?? 0),
    );
  }
}

/**
 * Keeps an EventSource open on /agent/api/events. The browser reconnects a dropped stream by
 * itself; when the server refuses it (401, 5xx while restarting) the EventSource closes for good,
 * so this checks whether we are still signed in and opens a new one with backoff.
 */
function connectLive({ onCall, onOpen }) {
  let source = null;
  let retryMs = 1000;
  const open = () => {
    if (signedOut) return;
    source = new EventSource(API.events);
    source.addEventListener('open', () => {
      retryMs = 1000;
      setConnection('live');
      onOpen();
    });
    source.addEventListener('call', (event) => {
      let call;
      try {
        call = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      if (isCallView(call)) onCall(call);
    });
    source.addEventListener('error', () => {
      setConnection('reconnecting');
      if (source.readyState !== EventSource.CLOSED) return;
      source = null;
      fetch(API.calls, { credentials: 'same-origin', cache: 'no-store' })
        .then((response) => {
          if (response.status === 401) showSignedOut();
        })
        .catch(() => {})
        .finally(() => {
          if (signedOut) return;
          setTimeout(open, retryMs);
          retryMs = Math.min(retryMs * 2, 30000);
        });
    });
  };
  open();
}

function applyI18n() {
  for (const el of document.querySelectorAll('[data-i18n]')) {
    const text = STRINGS[el.dataset.i18n];
    if (typeof text === 'string') el.textContent = text;
  }
  for (const el of document.querySelectorAll('[data-i18n-label]')) {
    const text = STRINGS[el.dataset.i18nLabel];
    if (typeof text === 'string') el.setAttribute('aria-label', text);
  }
  setConnection('connecting');
}

function announce(text, urgent) {
  const el = byId(urgent ? 'announce-alert' : 'announce-polite');
  if (!el) return;
  // Clear first so the same words said twice are announced twice.
  el.textContent = '';
  setTimeout(() => {
    el.textContent = text;
  }, 50);
}

// ---------------------------------------------------------------------------------------------
// The list page.

function listPage() {
  const list = byId('calls');
  const rows = new Map(); // id -> { li, parts }
  let initialLoadDone = false;

  const store = new CallStore((call, previous) => {
    if (!call) {
      rows.get(previous.id)?.li.remove();
      rows.delete(previous.id);
    } else {
      renderRow(call, previous);
    }
    scheduleLayout();
  });

  function buildRow(call) {
    const parts = {
      badge: h('div', { class: 'badge', 'data-testid': 'status' }),
      reverify: h('p', { class: 'row-reverify', 'data-testid': 'reverify-status', hidden: true }),
      caller: h('p', { class: 'row-caller' }),
      person: h('p', { class: 'row-person' }),
      line: h('p', { class: 'row-line' }),
      waitLabel: h('span', { class: 'row-wait-label' }),
      waitValue: h('span', { class: 'row-wait-value' }),
      phase: h('p', { class: 'row-phase' }),
      link: h('a', { class: 'row-link', 'data-testid': 'call-link', href: API.page(call.id), text: STRINGS.openCall }),
    };
    const li = h(
      'li',
      { class: 'call-row', 'data-call-id': call.id },
      h('div', { class: 'row-verdict' }, parts.badge, parts.reverify),
      h('div', { class: 'row-who' }, parts.caller, parts.person, parts.line),
      h('p', { class: 'row-wait' }, parts.waitLabel, ' ', parts.waitValue),
      parts.phase,
      h('p', { class: 'row-open' }, parts.link),
    );
    return { li, parts };
  }

  function renderRow(call, previous) {
    let row = rows.get(call.id);
    if (!row) {
      row = buildRow(call);
      rows.set(call.id, row);
    }
    const { li, parts } = row;
    const verdict = currentVerdict(call);
    renderBadge(parts.badge, verdict);
    li.dataset.phase = call.phase || '';
    li.dataset.kind = verdictWords(verdict).kind;

    const caller = callerText(call);
    setText(parts.caller, caller);
    renderPerson(parts.person, verdict);
    setText(parts.line, [call.route || call.called, STRINGS.started(clock(call.started_at))].filter(Boolean).join(' · '));
    setText(parts.phase, phaseText(call));
    parts.link.setAttribute('aria-label', STRINGS.openCallLabel(caller, clock(call.started_at)));

    const reverifyText = rowReverifyText(call);
    setText(parts.reverify, reverifyText);
    parts.reverify.hidden = !reverifyText;
    parts.reverify.dataset.state = call.reverify ? call.reverify.status : 'none';
    renderWait(row, call);

    // Announce new calls and changed verdicts (not the ones already there when the page opened).
    const sentence = verdictSentence(verdict);
    if (initialLoadDone && row.sentence !== sentence) {
      const urgent = verdictWords(verdict).kind === 'alarm';
      const say = previous ? STRINGS.announce.changed : STRINGS.announce.newCall;
      announce(say(caller, sentence), urgent);
    }
    row.sentence = sentence;
  }

  function rowReverifyText(call) {
    const r = call.reverify;
    if (!r) return '';
    if (r.status === 'pending') return STRINGS.rowReverifyPending;
    const time = clock(r.completed_at);
    return r.status === 'verified' ? STRINGS.reverifiedAt(time) : STRINGS.reverifyFailedAt(time);
  }

  function renderWait(row, call) {
    const wait = waitTime(call);
    setText(row.parts.waitLabel, wait.label);
    setText(row.parts.waitValue, wait.text);
    row.li.classList.toggle('is-waiting', wait.live);
  }

  // Order rows newest first; one pass per frame however many events arrived.
  let layoutPending = false;
  function scheduleLayout() {
    if (layoutPending) return;
    layoutPending = true;
    requestAnimationFrame(() => {
      layoutPending = false;
      const calls = store.sorted();
      calls.forEach((call, index) => {
        const li = rows.get(call.id).li;
        if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
      });
      const failed = signedOut || !byId('load-error').hidden;
      byId('empty').hidden = calls.length > 0 || !initialLoadDone || failed;
      const live = calls.filter((c) => c.phase !== 'ended').length;
      document.title = live > 0 ? STRINGS.listTitleWithCount(live) : STRINGS.listTitle;
    });
  }

  async function loadAll() {
    const requestedAt = performance.now();
    try {
      const body = await request(API.calls);
      const calls = Array.isArray(body && body.calls) ? body.calls.filter(isCallView) : [];
      store.applySnapshot(calls, requestedAt, true);
      showLoadError(null);
      forgetTokenInUrl();
    } catch (error) {
      showLoadError(error);
    } finally {
      initialLoadDone = true;
      scheduleLayout();
    }
  }

  // Waiting times tick; ended calls leave the list after 15 minutes.
  setInterval(() => {
    for (const call of [...store.calls.values()]) {
      const ended = parseTime(call.ended_at);
      if (ended !== null && now() - ended > KEEP_ENDED_MS) store.remove(call.id);
      else renderWait(rows.get(call.id), call);
    }
  }, 1000);

  document.title = STRINGS.listTitle;
  loadAll().then(() => {
    if (signedOut) return;
    let first = true;
    connectLive({
      onCall: (call) => store.applyEvent(call),
      onOpen: () => {
        // The first open follows the load just done; later ones may have missed events.
        if (!first) loadAll();
        first = false;
      },
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The call page.

function callIdFromPath() {
  const match = window.location.pathname.match(/\/agent\/calls\/([^/]+)\/?$/);
  if (!match) return '';
  try {
    return decodeURIComponent(match[1]);
  } catch (_) {
    return '';
  }
}

function callPage() {
  const id = callIdFromPath();
  const el = {
    root: byId('call'),
    heading: byId('call-heading'),
    notFound: byId('not-found'),
    badge: document.querySelector('#call [data-testid="status"]'),
    source: byId('verdict-source'),
    person: byId('person'),
    details: byId('details'),
    originalPanel: byId('original-panel'),
    originalBadge: byId('original-badge'),
    reverifyStatus: byId('reverify-status'),
    form: byId('reverify-form'),
    input: byId('personal-number'),
    button: byId('reverify-button'),
    error: byId('reverify-error'),
    unavailable: byId('reverify-unavailable'),
  };
  let call = null;
  let sending = false;
  const store = new CallStore((next) => {
    if (next && next.id === id) {
      call = next;
      render();
    }
  });

  // Detail rows: built once, their values updated.
  const detailKeys = Object.keys(STRINGS.details);
  const detailValues = {};
  for (const key of detailKeys) {
    detailValues[key] = h('dd');
    const wrap = h('div', { class: 'detail', 'data-detail': key }, h('dt', { text: STRINGS.details[key] }), detailValues[key]);
    el.details.append(wrap);
  }

  function setDetail(key, value) {
    setText(detailValues[key], value || '');
    detailValues[key].parentElement.hidden = !value;
  }

  function render() {
    el.root.hidden = false;
    el.notFound.hidden = true;
    const caller = callerText(call);
    const verdict = currentVerdict(call);
    setText(el.heading, STRINGS.callHeading(caller));
    document.title = STRINGS.callTitle(verdictWords(verdict).label, caller);
    renderBadge(el.badge, verdict);
    el.root.dataset.kind = verdictWords(verdict).kind;
    setText(
      el.source,
      verdict.fromReverify ? STRINGS.verdictFromReverify(clock(verdict.at)) : STRINGS.verdictFromCallStart,
    );
    renderPerson(el.person, verdict);

    // When a re-verification decided, the original verdict stays visible below.
    el.originalPanel.hidden = !verdict.fromReverify;
    if (verdict.fromReverify) renderBadge(el.originalBadge, originalVerdict(call));

    setDetail('caller', caller);
    setDetail('name', verdict.name);
    setDetail('subject', verdict.subject);
    setDetail('method', STRINGS.methods[verdict.method] || verdict.method);
    setDetail('called', call.called);
    setDetail('route', call.route);
    setDetail('mode', STRINGS.modes[call.mode] || call.mode);
    setDetail('phase', phaseText(call));
    setDetail('started', clock(call.started_at));
    setDetail('decided', clock(call.decided_at));
    setDetail('connected', clock(call.connected_at));
    setDetail('ended', clock(call.ended_at));
    setDetail('outcome', STRINGS.outcomes[call.outcome] || call.outcome);
    setDetail('id', call.id);
    renderWait();
    renderReverify();
  }

  function renderWait() {
    if (!call) return;
    const wait = waitTime(call);
    setDetail('wait', wait.text ? `${wait.text}${wait.live ? ` (${STRINGS.waiting.toLowerCase()})` : ''}` : '');
  }

  function renderReverify() {
    const r = call.reverify;
    const state = r ? r.status : 'none';
    let text;
    if (!r) text = STRINGS.reverify.none;
    else if (r.status === 'pending') text = STRINGS.reverify.pending(clock(r.requested_at));
    else if (r.status === 'verified') {
      const who = [personText(r), STRINGS.methods[r.method] || r.method].filter(Boolean).join(' · ');
      text = STRINGS.reverify.verified(clock(r.completed_at), who);
    } else {
      text = STRINGS.reverify.unverified(clock(r.completed_at), reasonText(r.reason) || STRINGS.status.unverified);
    }
    el.reverifyStatus.dataset.state = state;
    el.reverifyStatus.dataset.reason = (r && r.reason) || '';
    el.reverifyStatus.classList.toggle('is-alarm', Boolean(r && ALARM_REASONS.has(r.reason)));
    setText(el.reverifyStatus, text);

    const can = call.can_reverify === true;
    el.button.disabled = !can || sending;
    setText(el.button, sending ? STRINGS.reverifySending : STRINGS.reverifyButton);
    let why = '';
    if (!can) {
      if (call.phase === 'ended') why = STRINGS.reverifyUnavailable.ended;
      else if (r && r.status === 'pending') why = STRINGS.reverifyUnavailable.pending;
      else if (call.phase !== 'with-agent') why = STRINGS.reverifyUnavailable.notWithAgent;
      else why = STRINGS.reverifyUnavailable.other;
    }
    setText(el.unavailable, why);
    el.unavailable.hidden = !why;
  }

  function showError(text, focusInput) {
    setText(el.error, text);
    if (focusInput) el.input.setAttribute('aria-invalid', 'true');
    else el.input.removeAttribute('aria-invalid');
    if (focusInput) el.input.focus();
  }

  async function submit(event) {
    event.preventDefault();
    if (!call || sending) return;
    const digits = el.input.value.replace(/[\s-]/g, '');
    if (digits !== '' && !/^[0-9]{12}$/.test(digits)) {
      showError(STRINGS.errors.badPersonalNumber, true);
      return;
    }
    showError('', false);
    sending = true;
    renderReverify();
    try {
      await request(API.reverify(id), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(digits ? { personal_number: digits } : {}),
      });
      el.input.value = ''; // no personal numbers left lying on the screen
      sending = false;
      load(); // in case the event stream is behind
    } catch (error) {
      sending = false;
      if (!(error instanceof HttpError)) showError(STRINGS.errors.network, false);
      else if (error.status === 401) showError(STRINGS.signedOut, false);
      else if (error.status === 404) showError(error.message || STRINGS.errors.notFound, false);
      else if (error.status === 400) showError(error.message || STRINGS.errors.badPersonalNumber, true);
      else if (error.status === 409) {
        // e.g. no person known: the agent has to type the personal identity number
        showError(error.message || STRINGS.errors.http(409), el.input.value.trim() === '');
      } else showError(error.message || STRINGS.errors.http(error.status), false);
    } finally {
      if (call) renderReverify();
    }
  }

  async function load() {
    const requestedAt = performance.now();
    try {
      const found = await request(API.call(id));
      if (isCallView(found)) store.applySnapshot([found], requestedAt, false);
      showLoadError(null);
      forgetTokenInUrl();
    } catch (error) {
      if (error instanceof HttpError && error.status === 404) {
        forgetTokenInUrl();
        if (!call) {
          el.notFound.hidden = false;
          setText(el.heading, STRINGS.callHeadingLoading);
        }
        showLoadError(null);
      } else {
        showLoadError(error);
      }
    }
  }

  el.form.addEventListener('submit', submit);
  el.input.addEventListener('input', () => {
    if (el.input.getAttribute('aria-invalid') === 'true') showError('', false);
  });
  setInterval(renderWait, 1000);

  if (!id) {
    el.notFound.hidden = false;
    return;
  }
  load().then(() => {
    if (signedOut) return;
    let first = true;
    connectLive({
      onCall: (next) => {
        if (next.id === id) store.applyEvent(next);
      },
      onOpen: () => {
        if (!first) load();
        first = false;
      },
    });
  });
}

// ---------------------------------------------------------------------------------------------

function main() {
  applyI18n();
  const page = document.body.dataset.page;
  if (page === 'list') listPage();
  else if (page === 'call') callPage();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
else main();
