'use strict';
// The console: the native API (/api/v1) from a browser, for people with an account. It
// decides nothing itself: every list, read and decision is an API call that the server
// authorises and records like any other, so a tab this script shows is a convenience, not
// a permission.
//
// No third-party code and no inline script: the Content-Security-Policy allows this file
// only. Every text that comes from the server is put in the page as text (textContent or
// a text node), never parsed as HTML, and no link or attribute is built from it.
//
// The session token is kept in sessionStorage, so a reload keeps the session and closing
// the tab forgets it. It travels only in the Authorization header, never as a cookie, so
// no other site can make the browser send it (no cross-site request forgery). Signing out
// revokes it on the server, and the server ends an idle session by itself.

const $ = (selector) => document.querySelector(selector);
const STORAGE_KEY = 'chaperone.session';
const APPROVER_ROLES = ['admin', 'security', 'approver'];
const CAPABILITIES = ['read', 'list', 'write', 'delete', 'destroy'];

let session = null; // { token, token_id, person, role }
let names = new Map(); // person id -> name, when the caller may list people

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// An element with properties (`text`, `class`, `on<event>`, or attributes) and children
// (nodes, or strings added as text).
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// A table that scrolls sideways on its own on a narrow screen, not the whole page.
function table(headings, rows) {
  return el('div', { class: 'scroll' }, el('table', {},
    el('thead', {}, el('tr', {}, ...headings.map((h) => el('th', { text: h })))),
    el('tbody', {}, ...rows.map((cells) => el('tr', {}, ...cells.map((c) => el('td', {}, c)))))));
}

function showError(message) {
  const box = $('#error');
  box.textContent = message;
  box.hidden = !message;
  if (message) box.scrollIntoView({ block: 'nearest' });
}

function notice(message) {
  const box = $('#message');
  box.textContent = message;
  box.hidden = !message;
}

// Runs an action, showing what went wrong instead of failing silently. `button`, if
// given, is disabled meanwhile, so that a double click does not send the action twice.
async function guard(action, button) {
  showError('');
  notice('');
  if (button) {
    if (button.disabled) return;
    button.disabled = true;
  }
  try {
    await action();
  } catch (e) {
    if (!session) return; // the session ended: the sign-in form says why
    showError(e instanceof ApiError ? e.message
      : e instanceof TypeError ? 'The server could not be reached.' : 'Something went wrong: ' + e.message);
  } finally {
    if (button) button.disabled = false;
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body.error) return { code: body.error.code, message: body.error.message };
  } catch (_) {
    // not JSON: fall through
  }
  return { code: 'error', message: 'The server answered ' + response.status + '.' };
}

// One API call with the session's token; the parsed answer, or an ApiError. A 401 means
// the session is over (signed out elsewhere, idle, expired), and so does a 403
// `person_inactive` (the account disabled or past its end date: its sessions are revoked).
async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + session.token };
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await errorOf(response);
    // A wrong step-up code is a 401 too, and the session lives on.
    if (response.status === 401 && error.code !== 'invalid_credentials') {
      end('Your session has ended (' + error.message + '). Sign in again.');
    } else if (response.status === 403 && error.code === 'person_inactive') {
      end('Your account is not active (' + error.message + '). Ask an administrator.');
    }
    throw new ApiError(response.status, error.code, error.message);
  }
  if (response.status === 204) return null;
  const type = response.headers.get('Content-Type') || '';
  return type.startsWith('application/json') ? response.json() : response.text();
}

function encodePath(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

function personName(id) {
  if (id && session && id === session.person_id) return 'you';
  return (id && names.get(id)) || id || '';
}

// Who acted in a ledger entry: a person, or a token of no person (the initial admin
// token, a service), or nobody (the server itself).
function actorName(actor) {
  if (actor && actor.person) return personName(actor.person);
  if (actor && actor.token) return 'token ' + actor.token;
  return 'server';
}

function day(time) {
  return time ? time.slice(0, 10) : '';
}

function minute(time) {
  return time ? time.slice(0, 16).replace('T', ' ') : '';
}

function duration(secs) {
  if (secs % 86400 === 0) return secs / 86400 + 'd';
  if (secs % 3600 === 0) return secs / 3600 + 'h';
  return Math.round(secs / 60) + 'm';
}

// ---------------------------------------------------------------------------------------
// Signing in and out

async function signIn(event) {
  event.preventDefault();
  showError('');
  notice('');
  const body = { user: $('#user').value, password: $('#password').value };
  if ($('#totp').value) body.totp = $('#totp').value.trim();
  $('#password').value = '';
  $('#totp').value = '';
  const response = await fetch('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!response.ok) return showError((await errorOf(response)).message);
  const login = await response.json();
  session = { token: login.token, token_id: login.token_id, person: login.person, role: login.role };
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  await start();
}

async function signOut() {
  let revoked = true;
  if (session) {
    revoked = await fetch('/api/v1/auth/tokens/' + encodeURIComponent(session.token_id), {
      method: 'DELETE',
      headers: { Authorization: 'Bearer ' + session.token },
      credentials: 'omit',
    }).then((r) => r.ok || r.status === 401, () => false);
  }
  // The session is forgotten here either way; if the server did not end it, it ends at the
  // server's idle limit, and the person should know.
  end(revoked
    ? 'You are signed out.'
    : 'Signed out of this page, but the server could not be told: the session ends at its idle limit.');
}

// Forgets the session and shows the sign-in form.
function end(message) {
  session = null;
  names = new Map();
  sessionStorage.removeItem(STORAGE_KEY);
  history.replaceState(null, '', location.pathname);
  $('#view').replaceChildren();
  $('#tabs').replaceChildren();
  $('#console-box').hidden = true;
  $('#signin-box').hidden = false;
  notice('');
  showError('');
  $('#signin-box .small').textContent = message ||
    'Sign out when you are done: closing this tab forgets your session here, but the server ends it only when it is left unused for its idle limit.';
}

// ---------------------------------------------------------------------------------------
// Tabs

const TABS = [
  { id: 'requests', label: 'Access requests', roles: null, view: requestsView },
  { id: 'secrets', label: 'Secrets', roles: null, view: secretsView },
  { id: 'vendors', label: 'Vendors', roles: ['admin', 'security', 'auditor', 'approver'], view: vendorsView },
  { id: 'findings', label: 'Findings', roles: ['admin', 'security', 'auditor', 'approver', 'member'], view: findingsView },
  { id: 'ledger', label: 'Ledger', roles: ['admin', 'security', 'auditor', 'contractor'], view: ledgerView },
  { id: 'reports', label: 'Reports', roles: ['admin', 'security', 'auditor'], view: reportsView },
];

function tabsFor(role) {
  return TABS.filter((t) => !t.roles || t.roles.includes(role));
}

async function start() {
  // The stored session may be over: ask the server who it belongs to.
  let me;
  try {
    me = await api('GET', '/api/v1/auth/self');
  } catch (e) {
    // Ended by `api` when the server said the session is over. Otherwise (sealed,
    // restarting, unreachable) the session may still be live on the server: it is kept, so
    // that it can still be used and signed out, and the page tries again when asked.
    if (!session) return;
    $('#signin-box').hidden = true;
    $('#console-box').hidden = true;
    showError('The server could not be reached (' + e.message.replace(/\.$/, '') +
      '). Your session is kept.');
    const retry = el('button', { type: 'button', id: 'retry', text: 'Try again' });
    retry.addEventListener('click', () => {
      showError('');
      start().catch((error) => end('Something went wrong: ' + error.message));
    }, { once: true });
    $('#error').append(' ', retry);
    return;
  }
  showError('');
  session.role = me.role;
  session.person = me.person || session.person;
  session.person_id = me.person_id;
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  $('#signin-box').hidden = true;
  $('#console-box').hidden = false;
  $('#who').textContent = 'Signed in as ' + session.person + ' (' + session.role + ')';
  if (session.role === 'admin') {
    // Admins may list people: show names instead of ids. Other roles are not asked, so
    // that no call is made only to be refused.
    try {
      names = new Map((await api('GET', '/api/v1/people')).map((p) => [p.id, p.name]));
    } catch (_) {
      names = new Map();
    }
  }
  const tabs = tabsFor(session.role);
  $('#tabs').replaceChildren(...tabs.map((t) =>
    el('button', { type: 'button', id: 'tab-' + t.id, text: t.label, onclick: () => openTab(t.id) })));
  const wanted = location.hash.slice(1);
  await openTab(tabs.some((t) => t.id === wanted) ? wanted : tabs[0].id);
}

async function openTab(id) {
  const tab = tabsFor(session.role).find((t) => t.id === id);
  if (!tab) return;
  history.replaceState(null, '', '#' + id);
  for (const button of document.querySelectorAll('#tabs button')) {
    button.classList.toggle('current', button.id === 'tab-' + id);
  }
  notice('');
  const view = el('div', { id: 'view-' + id });
  $('#view').replaceChildren(view);
  await guard(() => tab.view(view));
}

// ---------------------------------------------------------------------------------------
// Access requests: approvers decide, everyone asks

async function requestsView(view) {
  const status = el('select', { id: 'request-status' },
    ...['pending', 'approved', 'denied', 'cancelled', ''].map((s) => el('option', { value: s, text: s || 'all' })));
  const list = el('div', { id: 'request-list' });
  const load = async () => {
    const query = status.value ? '?status=' + encodeURIComponent(status.value) : '';
    const requests = await api('GET', '/api/v1/requests' + query);
    requests.sort((a, b) => b.created_time.localeCompare(a.created_time));
    list.replaceChildren(requests.length
      ? table(['asked (UTC)', 'who', 'prefix', 'capabilities', 'for', 'level', 'approvals', 'why', 'status',
        'decisions', ''],
      requests.map((r) => [
        minute(r.created_time), r.person, el('code', { text: r.prefix }), r.capabilities.join(', '),
        duration(r.duration_secs),
        // A contractor is not told the level, nor so how many approvals it takes.
        r.level || '-', r.level ? r.approvals.length + ' of ' + r.approvals_needed : '-',
        r.reason, r.status, decisions(r), decide(r, load),
      ]))
      : el('p', { class: 'small', text: 'No requests.' }));
  };
  status.addEventListener('change', () => guard(load));
  const grants = el('div', { id: 'my-grants' });
  view.append(grants, el('h2', { text: 'Access requests' }), el('label', { class: 'inline' }, 'Show ', status), list,
    askForm(load));
  await Promise.all([myGrants(grants, load), load()]);
}

// The caller's own grants that have not ended, each with a form to ask for an extension
// (a new request, approved like any other).
async function myGrants(box, reloadRequests) {
  const grants = await api('GET', '/api/v1/auth/grants');
  box.replaceChildren(el('h2', { text: 'Your access' }), grants.length
    ? table(['prefix', 'capabilities', 'until (UTC)', ''], grants.map((g) => [
      el('code', { text: g.prefix }), g.capabilities.join(', '), minute(g.expires_time),
      extendForm(g, reloadRequests),
    ]))
    : el('p', { class: 'small', text: 'You hold no grant now.' }));
}

function extendForm(grant, reloadRequests) {
  const length = el('input', { class: 'extend-duration', value: '1d', 'aria-label': 'for how long' });
  const reason = el('input', { class: 'extend-reason', placeholder: 'why', 'aria-label': 'why' });
  return el('span', { class: 'decide' }, length, reason, el('button', {
    type: 'button', class: 'extend', text: 'Ask to extend',
    onclick: (e) => guard(async () => {
      const asked = await api('POST', '/api/v1/grants/' + encodeURIComponent(grant.id) + '/extend',
        { duration: length.value.trim(), reason: reason.value });
      reason.value = '';
      await reloadRequests();
      notice('Asked: request ' + asked.id + ' to extend your access to ' + grant.prefix + ' waits for approval.');
    }, e.target),
  }));
}

// What approvers said: each approval and a denial, with their comments.
function decisions(request) {
  const said = (verb, d) => verb + (names.has(d.by) ? ' by ' + personName(d.by) : '') +
    (d.comment ? ': ' + d.comment : '');
  return request.approvals.map((a) => said('approved', a))
    .concat(request.denial ? [said('denied', request.denial)] : []).join('; ');
}

// Approve and deny, for a pending request someone else made; withdraw, for one's own.
function decide(request, reload) {
  if (request.status !== 'pending') return null;
  if (request.person === session.person) {
    return el('button', {
      type: 'button', class: 'withdraw', text: 'Withdraw',
      onclick: (e) => guard(async () => {
        await api('POST', '/api/v1/requests/' + encodeURIComponent(request.id) + '/cancel');
        await reload();
        notice('Withdrawn.');
      }, e.target),
    });
  }
  if (!APPROVER_ROLES.includes(session.role)) return null;
  const comment = el('input', { class: 'comment', placeholder: 'comment', 'aria-label': 'comment' });
  const box = el('span', { class: 'decide' }, comment);
  const act = (verb, button) => guard(async () => {
    let answer;
    try {
      answer = await api('POST', '/api/v1/requests/' + encodeURIComponent(request.id) + '/' + verb,
        { comment: comment.value || null });
    } catch (e) {
      // Access to a level with step-up is handed out only after a fresh code.
      if (e instanceof ApiError && e.code === 'step_up_required' && !box.querySelector('#step-up')) {
        return stepUp(box, 'Approving access to ' + request.prefix, 'approve', () => act(verb, button));
      }
      throw e;
    }
    await reload();
    notice(verb === 'approve'
      ? (answer.status === 'approved'
        ? 'Approved: ' + answer.person + ' has ' + answer.capabilities.join(', ') + ' on ' + answer.prefix + '.'
        : 'Your approval is recorded; ' + answer.approvals.length + ' of ' + answer.approvals_needed + ' given.')
      : 'Denied.');
  }, button);
  box.append(
    el('button', { type: 'button', class: 'approve', text: 'Approve', onclick: (e) => act('approve', e.target) }),
    el('button', { type: 'button', class: 'deny', text: 'Deny', onclick: (e) => act('deny', e.target) }));
  return box;
}

function askForm(reload) {
  const prefix = el('input', { id: 'ask-prefix', placeholder: 'team/payments/', autocomplete: 'off' });
  const boxes = CAPABILITIES.map((c) => el('input', { type: 'checkbox', id: 'ask-' + c, value: c }));
  boxes[0].checked = true;
  const length = el('input', { id: 'ask-duration', value: '1d' });
  const reason = el('textarea', { id: 'ask-reason', rows: '2' });
  const form = el('form', { id: 'ask' },
    el('h3', { text: 'Ask for access' }),
    el('label', {}, 'Path prefix', prefix),
    el('fieldset', {}, el('legend', { text: 'Capabilities' }),
      ...boxes.map((box) => el('label', { class: 'inline' }, box, ' ' + box.value))),
    el('label', {}, 'For how long (such as 4h or 3d)', length),
    el('label', {}, 'Why', reason),
    el('button', { type: 'submit', text: 'Ask' }));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    guard(async () => {
      const asked = await api('POST', '/api/v1/requests', {
        prefix: prefix.value.trim(),
        capabilities: boxes.filter((b) => b.checked).map((b) => b.value),
        duration: length.value.trim(),
        reason: reason.value,
      });
      reason.value = '';
      await reload();
      // A contractor is not told how the path is classified, so not how many approvals it needs.
      notice('Asked: request ' + asked.id + (asked.level
        ? ' needs ' + asked.approvals_needed + ' approval(s) at level ' + asked.level + '.'
        : ' waits for approval.'));
    }, form.querySelector('button[type=submit]'));
  });
  return form;
}

// ---------------------------------------------------------------------------------------
// Secrets: list and read what the server lets the caller see

async function secretsView(view, prefix) {
  prefix = prefix || '';
  const where = el('p', { class: 'path' });
  const parts = prefix.split('/').filter(Boolean);
  where.append(el('button', { type: 'button', class: 'link', text: 'secrets', onclick: () => again('') }));
  parts.forEach((part, i) => {
    const to = parts.slice(0, i + 1).join('/') + '/';
    where.append(' / ', el('button', { type: 'button', class: 'link', text: part, onclick: () => again(to) }));
  });
  const shown = el('div', { id: 'secret' });
  function again(to) {
    view.replaceChildren();
    return guard(() => secretsView(view, to));
  }
  const direct = el('input', { id: 'read-path', placeholder: (prefix || 'team/payments/') + 'name', autocomplete: 'off' });
  const form = el('form', { id: 'read' }, el('label', {}, 'Read a path', direct),
    el('button', { type: 'submit', text: 'Read' }));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    guard(() => readSecret(direct.value.trim().replace(/^\/+|\/+$/g, ''), shown));
  });
  view.append(el('h2', { text: 'Secrets' }), where);
  let listing;
  try {
    listing = await api('GET', '/api/v1/secrets/list' + (prefix ? '/' + encodePath(prefix) : ''));
  } catch (e) {
    // A grant to read without listing: the path can still be read by name. Any other
    // refusal (a suspended vendor, the compliance gate) is shown as it is.
    if (!(e instanceof ApiError && e.status === 403 && e.code === 'not_permitted')) throw e;
    listing = { keys: [] };
  }
  const rows = listing.keys.map((key) => [key.endsWith('/')
    ? el('button', { type: 'button', class: 'link', 'data-path': prefix + key, text: key, onclick: () => again(prefix + key) })
    : el('button', { type: 'button', class: 'link', 'data-path': prefix + key, text: key,
      onclick: () => guard(() => readSecret(prefix + key, shown)) })]);
  view.append(
    rows.length ? table(['name'], rows) : el('p', { class: 'small', text: 'Nothing here that you may list.' }),
    form,
    el('p', { class: 'small', text: 'Reading a secret is recorded in the ledger, as with the CLI or the API.' }),
    shown);
}

async function readSecret(path, box) {
  box.replaceChildren();
  clearTimeout(hideTimer);
  let secret;
  try {
    secret = await api('GET', '/api/v1/secrets/data/' + encodePath(path));
  } catch (e) {
    if (e instanceof ApiError && e.code === 'step_up_required') {
      return stepUp(box, 'Reading ' + path, 'read', () => readSecret(path, box));
    }
    throw e;
  }
  const fields = Object.entries(secret.data).map(([name, value]) =>
    [name, el('code', { class: 'value', translate: 'no', text: typeof value === 'string' ? value : JSON.stringify(value) })]);
  box.append(el('h3', {}, el('code', { text: path })),
    el('p', { class: 'small', text: 'Version ' + secret.version + ', written ' + minute(secret.created_time) +
      ' UTC. Shown for ' + SHOWN_SECS + ' seconds, and hidden as soon as this tab is.' }),
    table(['field', 'value'], fields),
    el('button', { type: 'button', text: 'Hide', onclick: () => box.replaceChildren() }));
  // A value does not stay on an unattended screen.
  hideTimer = setTimeout(() => box.replaceChildren(), SHOWN_SECS * 1000);
}

const SHOWN_SECS = 60;
let hideTimer = null;

// Values leave the page when the tab is hidden (another tab, a locked screen).
document.addEventListener('visibilitychange', () => {
  // (A step-up form stays: its code is fetched from the authenticator, in another app.)
  const shown = document.querySelector('#secret');
  if (document.hidden && shown && !shown.querySelector('#step-up')) shown.replaceChildren();
});

// A level that asks for a fresh second factor (to read there, or to approve access to it):
// verify a TOTP code on this session, then `retry` what needed it.
function stepUp(box, what, verb, retry) {
  const code = el('input', { id: 'step-up-code', inputmode: 'numeric', autocomplete: 'one-time-code' });
  const verify = el('button', { type: 'submit', text: 'Verify and ' + verb });
  const form = el('form', { id: 'step-up' },
    el('p', { text: what + ' needs a fresh second factor: enter the current code from ' +
      'your authenticator app.' }),
    el('label', {}, 'TOTP code', code),
    verify, ' ',
    el('button', { type: 'button', text: 'Cancel', onclick: () => form.remove() }));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    guard(async () => {
      try {
        await api('POST', '/api/v1/auth/verify', { totp: code.value.trim() });
      } finally {
        code.value = '';
      }
      form.remove();
      await retry();
    }, verify);
  });
  box.append(form);
  code.focus();
}

// ---------------------------------------------------------------------------------------
// Vendors, findings, the ledger

async function vendorsView(view) {
  const detail = el('div', { id: 'vendor' });
  const vendors = await api('GET', '/api/v1/vendors');
  view.append(el('h2', { text: 'Vendors' }),
    vendors.length
      ? table(['name', 'status', 'criticality', 'owner', 'since'], vendors.map((v) => [
        el('button', { type: 'button', class: 'link', text: v.name, onclick: () => guard(() => showVendor(v.name, detail)) }),
        v.status, v.criticality || '', personName(v.owner), day(v.created_time),
      ]))
      : el('p', { class: 'small', text: 'No vendors yet.' }),
    detail);
}

async function showVendor(name, box) {
  const v = await api('GET', '/api/v1/vendors/' + encodeURIComponent(name));
  box.replaceChildren(el('h3', { text: v.name + ' (' + v.status + ')' }),
    el('h4', { text: 'Agreements' }),
    v.agreements.length
      ? table(['kind', 'title', 'status', 'signed', 'effective', 'expires'], v.agreements.map((a) =>
        [a.kind, a.title || '', a.status, day(a.signed), day(a.effective), day(a.expires)]))
      : el('p', { class: 'small', text: 'None on file.' }),
    el('h4', { text: 'Evidence' }),
    v.evidence.length
      ? table(['kind', 'issuer', 'status', 'expires'], v.evidence.map((e) =>
        [e.kind, e.issuer || '', e.status, day(e.expires)]))
      : el('p', { class: 'small', text: 'None on file.' }));
}

async function findingsView(view) {
  const status = el('select', { id: 'finding-status' },
    ...['open', 'in_progress', 'resolved', 'risk_accepted', ''].map((s) => el('option', { value: s, text: s || 'all' })));
  const list = el('div');
  const load = async () => {
    const query = status.value ? '?status=' + encodeURIComponent(status.value) : '';
    const findings = await api('GET', '/api/v1/findings' + query);
    list.replaceChildren(findings.length
      ? table(['severity', 'title', 'about', 'source', 'owner', 'due', 'status'], findings.map((f) =>
        [f.severity, f.title, f.subject, f.source, personName(f.owner), day(f.due), f.status]))
      : el('p', { class: 'small', text: 'No findings.' }));
  };
  status.addEventListener('change', () => guard(load));
  view.append(el('h2', { text: 'Findings' }), el('label', { class: 'inline' }, 'Show ', status), list);
  await load();
}

const LATEST = 50;

// The ledger, LATEST entries at a time: the newest first, then older ones page by page.
// `end` is the sequence number after the last entry shown (the newest when not given).
async function ledgerView(view, end) {
  const checkpoint = await api('GET', '/api/v1/ledger/checkpoint');
  const size = Number(checkpoint.split('\n')[1]);
  const upto = Math.min(end === undefined ? size : end, size);
  const from = Math.max(0, upto - LATEST);
  const entries = upto > from
    ? await api('GET', '/api/v1/ledger/entries?start=' + from + '&end=' + upto)
    : [];
  entries.reverse();
  const page = (to) => (e) => guard(async () => {
    view.replaceChildren();
    await ledgerView(view, to);
  }, e.target);
  const older = el('button', { type: 'button', id: 'ledger-older', text: 'Older', onclick: page(from) });
  const newer = el('button', { type: 'button', id: 'ledger-newer', text: 'Newer', onclick: page(upto + LATEST) });
  older.disabled = from === 0;
  newer.disabled = upto >= size;
  const mine = session.role === 'contractor' ? ' (yours only)' : '';
  view.append(el('h2', { text: 'Ledger' }),
    el('p', { text: size + ' entries. The latest signed checkpoint (verify it and the whole log offline with ' }, el('code', { text: 'chaperone ledger verify' }), '):'),
    el('pre', { id: 'checkpoint', text: checkpoint }),
    el('h3', { id: 'ledger-range', text: upto > from ? 'Entries ' + from + ' to ' + (upto - 1) + mine : 'No entries' }),
    el('p', { class: 'inline' }, newer, ' ', older),
    entries.length
      ? table(['#', 'time (UTC)', 'who', 'action', 'resource', 'outcome'], entries.map((e) => [
        String(e.seq), minute(e.time), actorName(e.actor), e.action, e.resource,
        e.outcome + (e.reasons && e.reasons.length ? ' (' + e.reasons.join(', ') + ')' : ''),
      ]))
      : el('p', { class: 'small', text: 'None to show here.' }));
}

function counts(list) {
  return list.length
    ? table(['name', 'count'], list.map((c) => [personName(c.name), String(c.count)]))
    : el('p', { class: 'small', text: 'None.' });
}

// A period's report: failed logins, data transfers, provisioning changes, anomalies and
// each vendor's compliance, as the API computes it from the ledger.
async function reportsView(view) {
  const day = (offset) => new Date(Date.now() + offset * 86400000).toISOString().slice(0, 10);
  const from = el('input', { id: 'report-from', type: 'date', value: day(-7) });
  const to = el('input', { id: 'report-to', type: 'date', value: day(1) });
  const out = el('div', { id: 'report' });
  const form = el('form', { id: 'report-period' },
    el('label', { class: 'inline' }, 'From ', from),
    el('label', { class: 'inline' }, 'to (not included) ', to),
    el('button', { type: 'submit', text: 'Report' }));
  const load = async () => {
    const query = '?from=' + encodeURIComponent(from.value) + '&to=' + encodeURIComponent(to.value);
    out.replaceChildren();
    const r = await api('GET', '/api/v1/reports' + query);
    const anomalies = Object.entries(r.anomalies);
    const changes = Object.entries(r.provisioning.counts);
    out.replaceChildren(
      el('p', { class: 'small', text: r.entries + ' ledger entries from ' + minute(r.from) + ' to ' + minute(r.to) + ' UTC.' }),
      el('h3', { text: 'Failed logins: ' + r.failed_logins.total }),
      el('h4', { text: 'By account' }), counts(r.failed_logins.by_account),
      el('h4', { text: 'By address' }), counts(r.failed_logins.by_address),
      el('h3', { text: 'Data transfers' }),
      r.data_transfers.length
        ? table(['action', 'total', 'top people', 'top vendors'], r.data_transfers.map((t) => [
          t.action, String(t.total),
          t.by_person.slice(0, 5).map((c) => personName(c.name) + ' ' + c.count).join(', '),
          t.by_vendor.slice(0, 5).map((c) => c.name + ' ' + c.count).join(', '),
        ]))
        : el('p', { class: 'small', text: 'None.' }),
      el('h3', { text: 'Provisioning changes' }),
      changes.length ? table(['action', 'count'], changes.map(([a, n]) => [a, String(n)]))
        : el('p', { class: 'small', text: 'None.' }),
      el('h3', { text: 'Anomalies' }),
      anomalies.length ? table(['kind', 'count'], anomalies.map(([k, n]) => [k, String(n)]))
        : el('p', { class: 'small', text: 'None.' }),
      el('h3', { text: 'Vendor compliance' }),
      r.vendor_compliance.length
        ? table(['vendor', 'status', 'levels', 'ending soon'], r.vendor_compliance.map((v) => [
          v.vendor, v.status,
          v.levels.map((l) => l.level + (l.met ? ': met' : ': not met' + (l.reason ? ' (' + l.reason + ')' : ''))).join('; '),
          v.ending_soon.join(', '),
        ]))
        : el('p', { class: 'small', text: 'No vendors.' }));
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    guard(load, form.querySelector('button[type=submit]'));
  });
  view.append(el('h2', { text: 'Reports' }), form, out);
  await load();
}

// ---------------------------------------------------------------------------------------

$('#signin').addEventListener('submit', (event) => {
  const button = $('#signin-button');
  if (button.disabled) {
    event.preventDefault();
    return;
  }
  button.disabled = true;
  signIn(event)
    .catch(() => showError('The sign-in failed: the server could not be reached.'))
    .finally(() => { button.disabled = false; });
});
$('#signout').addEventListener('click', () => signOut());
try {
  session = JSON.parse(sessionStorage.getItem(STORAGE_KEY));
} catch (_) {
  session = null;
}
if (session && session.token) {
  start().catch((e) => end('Something went wrong: ' + e.message));
} else {
  end('');
}
