// The UI shell: navigation and hash routing (`#/explore?expr=...`), so every view is a link
// that works at any prefix without server-side routes.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { html, parseHash } from './ui.js';
import { Overview } from './pages/overview.js';
import { Explore } from './pages/explore.js';
import { DashboardList, Dashboard } from './pages/dashboards.js';
import { Alerts } from './pages/alerts.js';
import { Silences } from './pages/silences.js';
import { Notifications } from './pages/notifications.js';
import { Targets } from './pages/targets.js';
import { Status } from './pages/status.js';

const PAGES = [
  ['overview', 'Overview', Overview],
  ['explore', 'Explore', Explore],
  ['dashboards', 'Dashboards', DashboardList],
  ['alerts', 'Alerts', Alerts],
  ['silences', 'Silences', Silences],
  ['notifications', 'Notifications', Notifications],
  ['targets', 'Targets', Targets],
  ['status', 'Status', Status],
];

function App() {
  const [route, setRoute] = useState({ ...parseHash(), n: 0 });
  useEffect(() => {
    // Pages keep their own state in the hash with replaceState, which fires no hashchange;
    // so a hashchange is the user (a link, the address bar, Back) and the page starts over
    // from the new URL, e.g. `#/explore?expr=...` opened from inside the app.
    const on = () => setRoute((r) => ({ ...parseHash(), n: r.n + 1 }));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const [page = 'overview', arg] = route.path;
  let body;
  if (page === 'dashboards' && arg) body = html`<${Dashboard} uid=${arg} key=${`${arg}-${route.n}`} />`;
  else {
    const p = PAGES.find(([id]) => id === page) || PAGES[0];
    body = html`<${p[2]} key=${`${p[0]}-${route.n}`} />`;
  }
  return html`<div class="app">
    <nav class="top">
      <a class="brand" href="#/overview">appliance</a>
      ${PAGES.map(([id, title]) => html`<a href=${`#/${id}`} class=${page === id ? 'on' : ''}>${title}</a>`)}
      <form method="post" action="-/logout" class="logout"><button type="submit">Log out</button></form>
    </nav>
    <main>${body}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
document.documentElement.dataset.ready = '1';
