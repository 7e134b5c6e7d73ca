// The console's shell: log in and out, and a hash router over views.js.
//   #/                      projects        #/p/<project>             its tables
//   #/t/<p>/<t>/<tab>       a table (index, log, live, write)
//   #/sql                   SQL             #/usage                   usage per hour
import {call, getSecret, setSecret} from './api.js';
import {h, replace} from './dom.js';
import {loginView, projectsView, sqlView, tableView, tablesView, usageView} from './views.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const status = document.getElementById('status');
let leaving = [];

const ROUTES = [
  [/^#?\/?$/, () => ({view: projectsView, params: {}})],
  [/^#\/p\/([^/]+)$/, (m) => ({view: tablesView, params: {project: m[1]}})],
  [/^#\/t\/([^/]+)\/([^/]+)(?:\/(index|log|live|write))?$/,
    (m) => ({view: tableView, params: {project: m[1], table: m[2], tab: m[3] || 'index'}})],
  [/^#\/sql$/, () => ({view: sqlView, params: {}})],
  [/^#\/usage$/, () => ({view: usageView, params: {}})],
];

function resolve(hash) {
  for (const [pattern, make] of ROUTES) {
    const match = pattern.exec(hash);
    if (match) {
      const route = make(match);
      for (const key of Object.keys(route.params)) {
        try {
          route.params[key] = decodeURIComponent(route.params[key]);
        } catch {
          return null;
        }
      }
      return route;
    }
  }
  return null;
}

const ctx = {
  onLeave(fn) {
    leaving.push(fn);
  },
  // Checks the secret before keeping it: GET /v1/usage answers any valid secret.
  async login(secret) {
    if (!secret) throw new Error('enter a secret');
    await call('GET', '/v1/usage', {secret});
    setSecret(secret);
    render();
  },
};

function render() {
  for (const fn of leaving) fn();
  leaving = [];
  const loggedIn = Boolean(getSecret());
  nav.hidden = !loggedIn;
  let node;
  let title = 'Log in';
  if (!loggedIn) {
    node = loginView({}, ctx);
  } else {
    const route = resolve(location.hash);
    if (route) {
      node = route.view(route.params, ctx);
    } else {
      node = h('section', {}, h('h1', {tabindex: '-1'}, 'Not found'),
        h('p', {}, 'No page here. ', h('a', {href: '#/'}, 'Projects')));
    }
    for (const link of nav.querySelectorAll('a')) {
      const here = link.getAttribute('href');
      const active = here === '#/' ? !/^#\/(sql|usage)/.test(location.hash) : location.hash.startsWith(here);
      if (active) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
  }
  replace(main, node);
  const heading = main.querySelector('h1');
  if (heading) {
    title = heading.textContent;
    heading.focus({preventScroll: true});
  }
  document.title = `${title} · Aquifer console`;
  status.textContent = title;
  if (!loggedIn) {
    const input = main.querySelector('input');
    if (input) input.focus();
  }
}

document.getElementById('logout').addEventListener('click', () => {
  setSecret('');
  location.hash = '#/';
  render();
});
window.addEventListener('hashchange', render);
render();
