'use strict';
// The pages Chaperone serves to people without an account: opening a share link
// (decrypted here with WebCrypto; the key never leaves this page), answering a request for
// a secret, and signing an offboarding attestation. No third-party code, no inline script:
// the Content-Security-Policy allows this file only.

const $ = (selector) => document.querySelector(selector);

function show(id) {
  for (const section of document.querySelectorAll('section')) {
    section.hidden = section.id !== id;
  }
}

function fail(message) {
  $('#error').textContent = message;
  show('error-box');
}

// A failure the visitor can correct (a wrong password, code or passphrase, a field left
// empty): the form stays, and its button works again. A share's key is only in this page's
// memory, so the page cannot simply be reloaded.
function retry(message, button) {
  $('#error').textContent = message;
  $('#error-box').hidden = false;
  button.disabled = false;
}

// Whether a refused answer can be tried again from the same form.
function correctable(response) {
  return [400, 401, 403].includes(response.status);
}

function done(message) {
  $('#done').textContent = message;
  show('done-box');
}

function base64urlBytes(text) {
  let b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  while (b64.length % 4) b64 += '=';
  const binary = atob(b64);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

async function errorOf(response, fallback) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || fallback;
  } catch (_) {
    return fallback;
  }
}

async function postJson(url, body, headers) {
  return fetch(url, {
    method: 'POST',
    headers: Object.assign({ 'Content-Type': 'application/json' }, headers || {}),
    body: JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
}

function token() {
  return location.pathname.split('/').pop();
}

// A request or attestation link's token: after `#` (links made before it moved there carry
// it as the last path segment). It leaves the address bar and the tab's history at once (the
// browser's global history may have noted it before this runs), and goes to the server only
// in POST bodies, never in a URL.
function linkToken(page) {
  reloadOnNewLink();
  const fromHash = location.hash.slice(1);
  const fromPath = location.pathname.split('/')[2] || '';
  history.replaceState(null, '', '/' + page);
  return fromHash || fromPath;
}

// Format: 1 ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖ tag), associated data
// "chaperone-share:" ‖ id; plaintext: u32 BE header length ‖ header JSON ‖ content.
async function decrypt(id, keyText, sealed) {
  if (sealed[0] !== 1) throw new Error('unknown format');
  const key = await crypto.subtle.importKey('raw', base64urlBytes(keyText), 'AES-GCM', false, ['decrypt']);
  const plain = new Uint8Array(await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv: sealed.slice(1, 13), additionalData: new TextEncoder().encode('chaperone-share:' + id) },
    key,
    sealed.slice(13),
  ));
  const length = new DataView(plain.buffer, plain.byteOffset, 4).getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(plain.slice(4, 4 + length)));
  return { header, content: plain.slice(4 + length) };
}

// Proof that this page holds the key, without sending it: hex SHA-256 of
// "chaperone-share-open:" ‖ id ‖ ":" ‖ key (chaperone_crypto::share::open_proof).
async function openProof(id, keyBytes) {
  const prefix = new TextEncoder().encode('chaperone-share-open:' + id + ':');
  const data = new Uint8Array(prefix.length + keyBytes.length);
  data.set(prefix);
  data.set(keyBytes, prefix.length);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

// A second link pasted into this tab changes only the fragment, which loads nothing: load
// the page again, so the new link's token leaves the address bar too and its own page runs.
function reloadOnNewLink() {
  window.addEventListener('hashchange', () => location.reload());
}

async function sharePage() {
  reloadOnNewLink();
  const id = token();
  const keyText = location.hash.slice(1);
  // The key stays in this page's memory only: out of the address bar and the tab's history
  // (the browser's global history may have noted the link before this runs).
  history.replaceState(null, '', location.pathname);
  if (!keyText) return fail('This link is incomplete: the part after # (its key) is missing.');
  let proof;
  try {
    proof = await openProof(id, base64urlBytes(keyText));
  } catch (_) {
    return fail('This link is damaged: its key cannot be read.');
  }
  const info = await postJson('/api/v1/shares/' + encodeURIComponent(id) + '/info', { proof });
  if (!info.ok) return fail(await errorOf(info, 'This link has expired, was used up or was revoked: if you did not use it yourself, tell whoever sent it to you.'));
  const meta = await info.json();
  $('#label').textContent = meta.label;
  $('#pass-row').hidden = !meta.needs_passphrase;
  $('#login-row').hidden = !meta.restricted;
  show('share-box');
  const reveal = $('#reveal');
  reveal.addEventListener('click', async () => {
    // One open at a time: a second click would spend a second view, and its refusal would
    // hide what the first one showed.
    if (reveal.disabled) return;
    reveal.disabled = true;
    try {
      await openShare(id, keyText, proof, meta, reveal);
    } catch (_) {
      retry('The server could not be reached; try again.', reveal);
    }
  });
}

// Opens the share and shows what it holds; a refusal the visitor can correct re-enables
// the button.
async function openShare(id, keyText, proof, meta, reveal) {
  const headers = {};
  let session = null;
  if (meta.restricted) {
    const login = await postJson('/api/v1/auth/login', {
      user: $('#user').value, password: $('#password').value, totp: $('#totp').value,
    });
    if (!login.ok) return retry(await errorOf(login, 'The login failed.'), reveal);
    session = await login.json();
    headers.Authorization = 'Bearer ' + session.token;
  }
  const passphrase = meta.needs_passphrase ? $('#passphrase').value : null;
  let opened;
  try {
    opened = await postJson('/api/v1/shares/' + encodeURIComponent(id) + '/open', { proof, passphrase }, headers);
  } finally {
    if (session) {
      // The session existed only to open this link: end it, whatever the open answered.
      await fetch('/api/v1/auth/tokens/' + encodeURIComponent(session.token_id), {
        method: 'DELETE', headers: { Authorization: 'Bearer ' + session.token }, credentials: 'omit',
      }).catch(() => {});
    }
  }
  if (!opened.ok) {
    const message = await errorOf(opened, 'The link could not be opened.');
    return correctable(opened) ? retry(message, reveal) : fail(message);
  }
  // What was typed to open it is not kept in the form.
  for (const input of ['#password', '#totp', '#passphrase']) $(input).value = '';
  let result;
  try {
    result = await decrypt(id, keyText, new Uint8Array(await opened.arrayBuffer()));
  } catch (_) {
    return fail('The content could not be decrypted: the link is damaged or its key is wrong.');
  }
  if (result.header.type === 'file') {
    // Always a download, whatever type the sender claimed.
    const blob = new Blob([result.content], { type: 'application/octet-stream' });
    const link = $('#download');
    link.href = URL.createObjectURL(blob);
    // The name is the sender's: control, direction and invisible characters (a
    // right-to-left override shows `invoice_\u202efdp.exe` as `invoice_exe.pdf`) are shown
    // and saved as `_`.
    const name = (result.header.name || '').replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, '_');
    link.download = name || 'download';
    link.textContent = 'Download ' + (name || 'the file');
    // One download: the content leaves this page's memory a minute after the click.
    link.addEventListener('click', () => setTimeout(() => {
      URL.revokeObjectURL(link.href);
      link.removeAttribute('href');
      link.textContent = 'Downloaded';
    }, 60000), { once: true });
    show('file-box');
  } else {
    $('#secret').textContent = new TextDecoder().decode(result.content);
    show('secret-box');
  }
}

async function requestPage() {
  const id = linkToken('r');
  if (!id) return fail('This link is incomplete: the part after # is missing.');
  const info = await postJson('/api/v1/request-links/info', { token: id });
  if (!info.ok) return fail(await errorOf(info, 'This link has expired or was already used.'));
  const asked = await info.json();
  $('#asker').textContent = asked.asked_by;
  $('#note').textContent = asked.note;
  if (asked.vendor) {
    $('#asker-vendor').textContent = asked.vendor;
    $('#outsider').hidden = false;
  }
  show('request-box');
  const submit = $('#submit');
  submit.addEventListener('click', async () => {
    if (submit.disabled) return;
    submit.disabled = true;
    const data = {};
    data[$('#field').value || 'value'] = $('#value').value;
    let sent;
    try {
      sent = await postJson('/api/v1/request-links/submit', { token: id, data });
    } catch (_) {
      return retry('The server could not be reached; try again.', submit);
    }
    if (!sent.ok) {
      const message = await errorOf(sent, 'The secret could not be submitted.');
      if (sent.status === 400) return retry(message, submit);
      // Not sent, and the form goes away: neither does the value stay behind in it.
      $('#value').value = '';
      return fail(message);
    }
    $('#value').value = '';
    done('Thank you: the secret was stored. You can close this page.');
  });
}

async function attestPage() {
  const id = linkToken('a');
  if (!id) return fail('This link is incomplete: the part after # is missing.');
  const info = await postJson('/api/v1/attestations/info', { token: id });
  if (!info.ok) return fail(await errorOf(info, 'This link is not valid.'));
  const meta = await info.json();
  if (meta.status !== 'pending') return done('This confirmation was already received. Thank you.');
  $('#vendor').textContent = meta.vendor;
  $('#terms').textContent = meta.terms;
  $('#due').textContent = meta.due;
  show('attest-box');
  const attest = $('#attest');
  attest.addEventListener('click', async () => {
    if (attest.disabled) return;
    attest.disabled = true;
    let sent;
    try {
      sent = await postJson('/api/v1/attestations/sign', {
        token: id, name: $('#signer').value, email: $('#email').value,
        action: $('#action').value, statement: $('#statement').value,
      });
    } catch (_) {
      return retry('The server could not be reached; try again.', attest);
    }
    if (!sent.ok) {
      const message = await errorOf(sent, 'The confirmation could not be sent.');
      return sent.status === 400 ? retry(message, attest) : fail(message);
    }
    const signed = await sent.json();
    done('Signed and recorded (SHA-256 ' + signed.sha256 + '). Thank you.');
  });
}

const pages = { share: sharePage, request: requestPage, attest: attestPage };
const page = pages[$('#app').dataset.page];
if (page) page().catch(() => fail('Something went wrong; open the link you were sent again.'));
