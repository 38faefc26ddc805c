// The Islands viewer: draws whatever panels the server declares (see ViewerProtocol.cs) and knows no component.
// Plain ES modules, no dependencies, served by the node itself.
import { el, svg, PALETTE } from './elements.js';
import { renderGeneration } from './generation.js';

/** The event-stream protocol this page understands; the server names its own in every message. */
export const PROTOCOL = 1;

const state = { expected: PROTOCOL, source: null, retry: null, skewed: false };
const $ = (id) => document.getElementById(id);

function setConnection(text) { $('connection').textContent = text; }

function showSkew(serverProtocol) {
  state.skewed = true;
  if (state.source) state.source.close();
  const banner = $('skew');
  banner.textContent = `This page speaks viewer protocol ${state.expected} but the server speaks protocol ${serverProtocol}: ` +
    'the node was upgraded or rolled back while the page was open. Reload the page to get the matching viewer.';
  banner.hidden = false;
  setConnection('stopped: protocol mismatch');
}

function showLogin(message = '') {
  if (state.source) state.source.close();
  $('groups').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  setConnection('signed out');
}

async function problemText(response) {
  try {
    const problem = await response.json();
    return problem.detail || problem.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function start() {
  let response;
  try {
    response = await fetch('session', { credentials: 'same-origin' });
  } catch (error) {
    setConnection(`server not reachable (${error.message}); retrying`);
    state.retry = setTimeout(start, 2000);
    return;
  }
  if (response.status === 401) return showLogin();
  if (!response.ok) {
    setConnection(`server answered ${response.status}; retrying`);
    state.retry = setTimeout(start, 2000);
    return;
  }
  const session = await response.json();
  if (session.protocol !== state.expected) return showSkew(session.protocol);
  $('login').hidden = true;
  $('groups').hidden = false;
  $('logout').hidden = false;
  connect();
}

function connect() {
  if (state.source) state.source.close();
  state.skewed = false;
  $('skew').hidden = true;
  const source = new EventSource('events');
  state.source = source;
  source.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.protocol !== state.expected) return showSkew(message.protocol);
    if (message.type === 'hello') {
      setConnection(`live from ${message.server}`);
      for (const group of message.groups ?? []) groupOf(group);
    }
    else if (message.type === 'panel') renderPanel(message.panel);
    else if (message.type === 'removed') document.querySelector(`[data-panel="${CSS.escape(message.removed)}"]`)?.remove();
  };
  source.onerror = () => {
    if (state.skewed) return;
    setConnection('disconnected; reconnecting');
    // A closed stream (a 401 after the session expired, or the node restarted with new session keys) is not retried by the
    // browser: ask again whether the session still holds.
    if (source.readyState === EventSource.CLOSED) {
      clearTimeout(state.retry);
      state.retry = setTimeout(start, 1000);
    }
  };
}

function groupOf(name) {
  let group = document.querySelector(`[data-group="${CSS.escape(name)}"]`);
  if (!group) {
    group = el('section', { class: 'group', 'data-group': name }, el('h2', { text: name }), el('div', { class: 'panels' }));
    $('groups').append(group);
  }
  return group.querySelector('.panels');
}

function renderPanel(panel) {
  let article = document.querySelector(`[data-panel="${CSS.escape(panel.id)}"]`);
  if (!article) {
    article = el('article', { 'data-panel': panel.id }, el('h3'), el('p', { class: 'detail' }), el('div', { class: 'elements' }));
    groupOf(panel.group).append(article);
  }
  article.className = `panel health-${panel.health}`;
  article.dataset.health = panel.health;
  article.querySelector('h3').textContent = panel.title;
  article.querySelector('.detail').textContent = panel.detail || '';
  const container = article.querySelector('.elements');
  const seen = new Set();
  for (const element of panel.elements) {
    seen.add(element.id);
    const existing = container.querySelector(`:scope > [data-element="${CSS.escape(element.id)}"]`);
    // A form keeps what the user typed and its last answer; an image is fetched again only when its URL changes.
    if (existing && (element.kind === 'form' || (element.kind === 'image' && existing.dataset.url === element.url))) continue;
    const node = renderElement(element);
    node.dataset.element = element.id;
    node.classList.add('el', element.kind);
    if (existing) existing.replaceWith(node); else container.append(node);
  }
  for (const node of [...container.children]) if (!seen.has(node.dataset.element)) node.remove();
}

function renderElement(e) {
  switch (e.kind) {
    case 'text': return el('div', {}, el('span', { class: 'label', text: e.label }), el('span', { class: 'value', text: e.value ?? '' }));
    case 'progress': return el('div', {}, el('span', { class: 'label', text: e.label }),
      el('progress', { value: e.value, max: e.max || 1 }), el('span', { class: 'value', text: `${e.value} / ${e.max}` }));
    case 'curve': return renderCurve(e);
    case 'table': return renderTable(e);
    case 'image': {
      const figure = el('figure', {}, el('img', { src: e.url, alt: e.label }), el('figcaption', { class: 'label', text: e.label }));
      figure.dataset.url = e.url;
      return figure;
    }
    case 'link': return el('div', {}, el('a', { href: e.url, text: e.label }));
    case 'form': return renderForm(e);
    default: return el('div', { text: `${e.label}: this page cannot show a '${e.kind}' element (reload it for a newer viewer)` });
  }
}

function renderCurve(e) {
  const width = 360, height = 140, pad = 30;
  const all = e.series.flatMap((s) => s.points);
  const box = el('div', {}, el('span', { class: 'label', text: e.label }));
  const chart = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': e.label });
  chart.dataset.points = String(e.series[0]?.points.length ?? 0);
  box.append(el('br'), chart);
  if (all.length === 0) return box;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys, Math.min(...ys) + 1e-6)];
  const X = (x) => pad + ((x - x0) / (x1 - x0)) * (width - pad - 8);
  const Y = (y) => height - pad + 8 - ((y - y0) / (y1 - y0)) * (height - pad);
  e.series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    if (s.style === 'points') {
      for (const [x, y] of s.points) chart.append(svg('circle', { cx: X(x), cy: Y(y), r: 3, fill: colour }));
    } else {
      const points = s.points.map(([x, y]) => `${X(x)},${Y(y)}`).join(' ');
      chart.append(svg('polyline', { points, fill: 'none', stroke: colour, 'stroke-width': 1.5 }));
    }
  });
  const label = (x, y, text, anchor = 'start') => {
    const t = svg('text', { x, y, 'font-size': 10, fill: '#5c6670', 'text-anchor': anchor });
    t.textContent = text;
    chart.append(t);
  };
  label(2, 12, y1.toPrecision(3));
  label(2, height - pad + 8, y0.toPrecision(3));
  label(pad, height - 4, `step ${x0}`);
  label(width - 8, height - 4, `${x1}`, 'end');
  box.append(el('div', { class: 'legend' }, ...e.series.map((s, i) => {
    const swatch = el('i');
    swatch.style.background = PALETTE[i % PALETTE.length];
    return el('span', {}, swatch, s.name);
  })));
  return box;
}

function renderTable(e) {
  const table = el('table', {}, el('thead', {}, el('tr', {}, ...e.columns.map((c) => el('th', { text: c })))));
  const body = el('tbody');
  for (const row of e.rows) body.append(el('tr', { class: `health-${row.health}` }, ...row.cells.map((c) => el('td', { text: c ?? '' }))));
  table.append(body);
  return el('div', {}, el('span', { class: 'label', text: e.label }), table);
}

function renderForm(e) {
  const form = el('form');
  for (const f of e.fields) {
    let input;
    if (f.type === 'select') {
      input = el('select', { name: f.name });
      for (const o of f.options) {
        const option = el('option', { value: o.value, text: o.label });
        if (o.value === f.value) option.selected = true;
        input.append(option);
      }
    } else {
      input = el('input', { name: f.name, type: f.type === 'number' ? 'number' : 'text', value: f.value, min: f.min, max: f.max, step: f.step });
    }
    form.append(el('label', {}, f.label, input));
  }
  const button = el('button', { type: 'submit', text: e.label });
  const result = el('div', { class: 'result', 'aria-live': 'polite' });
  form.append(button);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    result.textContent = 'working…';
    const body = {};
    for (const f of e.fields) {
      const value = form.elements[f.name].value;
      if (value === '') continue;
      body[f.name] = f.type === 'number' || /^\d+$/.test(value) ? Number(value) : value;
    }
    if (e.result === 'generation') body.format = 'json';
    try {
      const response = await fetch(e.action, {
        method: e.method, credentials: 'same-origin',
        headers: e.fields.length || e.result === 'generation' ? { 'Content-Type': 'application/json' } : {},
        body: e.method === 'DELETE' ? undefined : JSON.stringify(body),
      });
      if (!response.ok) { result.textContent = `${e.label} failed: ${await problemText(response)}`; return; }
      const answer = await response.json();
      result.replaceChildren(e.result === 'generation' ? renderGeneration(answer) : el('span', { text: `${e.label}: ${answer.status ?? 'done'}` }));
    } catch (error) {
      result.textContent = `${e.label} failed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
  return el('div', {}, form, result);
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = $('key').value;
  const response = await fetch('session', {
    method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ key }),
  });
  $('key').value = '';
  if (response.ok) start(); else showLogin(await problemText(response));
});

$('logout').addEventListener('click', async () => {
  await fetch('session', { method: 'DELETE', credentials: 'same-origin' });
  showLogin();
});

/** For operators' scripts and the browser tests: the expected protocol (an older page's) and a way to reconnect. */
window.islandsViewer = {
  get expectedProtocol() { return state.expected; },
  set expectedProtocol(value) { state.expected = value; },
  reconnect: () => start(),
};

start();
