// The console: session handling, the shell (navigation) and the routes.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, message, setCsrf, setUnauthorizedHandler, type Session } from './api';
import { BASE, Link, SessionCtx, isAdmin, navigate, useLocation, useTitle } from './lib';
import { Overview } from './pages/overview';
import { VmCreate, VmDetail, VmList } from './pages/vms';
import { ImageDetail, Images } from './pages/images';
import { BucketBrowser } from './pages/buckets';
import { Events, Storage } from './pages/misc';
import { DEFS, FormDialog, PASSWORD_FIELDS, defByRoute } from './kinds';
import { str } from './resource';
import { ResourceDetail, ResourceList, NotFound } from './resource';

interface NavItem {
  to: string;
  label: string;
  admin?: boolean;
}
const NAV: { group: string; admin?: boolean; items: NavItem[] }[] = [
  { group: 'Project', items: [{ to: '/', label: 'Overview' }, { to: '/events', label: 'Events' }, { to: '/alarms', label: 'Alarms' }] },
  {
    group: 'Compute',
    items: [
      { to: '/vms', label: 'Virtual machines' },
      { to: '/images', label: 'Images' },
      { to: '/placement-groups', label: 'Placement groups' },
    ],
  },
  {
    group: 'Storage',
    items: [
      { to: '/volumes', label: 'Volumes' },
      { to: '/snapshots', label: 'Snapshots' },
      { to: '/snapshot-policies', label: 'Snapshot policies' },
      { to: '/buckets', label: 'Buckets' },
    ],
  },
  {
    group: 'Network',
    items: [
      { to: '/vpcs', label: 'VPCs' },
      { to: '/subnets', label: 'Subnets' },
      { to: '/security-groups', label: 'Security groups' },
      { to: '/nics', label: 'Network interfaces' },
      { to: '/elastic-ips', label: 'Elastic IPs' },
      { to: '/nat-gateways', label: 'NAT gateways' },
      { to: '/vips', label: 'Virtual IPs' },
      { to: '/route-tables', label: 'Route tables' },
      { to: '/load-balancers', label: 'Load balancers' },
    ],
  },
  { group: 'Access', items: [{ to: '/api-keys', label: 'API keys' }, { to: '/s3-keys', label: 'S3 keys' }] },
  {
    group: 'Administration',
    admin: true,
    items: [
      { to: '/admin/hosts', label: 'Hosts' },
      { to: '/admin/projects', label: 'Projects & quotas' },
      { to: '/admin/users', label: 'Users' },
      { to: '/admin/flavors', label: 'Flavors' },
      { to: '/admin/external-networks', label: 'External networks' },
      { to: '/admin/storage', label: 'Storage' },
    ],
  },
];

function Nav({ session, path, open, onNavigate }: { session: Session; path: string; open: boolean; onNavigate: () => void }) {
  const admin = isAdmin(session);
  return (
    <nav id="nav" class={open ? 'nav open' : 'nav'} aria-label="Main" data-testid="nav">
      {NAV.filter((g) => !g.admin || admin).map((g) => (
        <div class="nav-group" data-testid={g.admin ? 'nav-admin' : undefined}>
          <h2>{g.group}</h2>
          <ul>
            {g.items.map((i) => {
              const active = i.to === '/' ? path === '/' : path === i.to || path.startsWith(i.to + '/');
              return (
                <li>
                  <Link to={i.to} class={active ? 'active' : ''} aria-current={active ? 'page' : undefined} onClick={onNavigate} data-testid={`nav-${i.to.replace(/\//g, '-').replace(/^-/, '') || 'overview'}`}>
                    {i.label}
                  </Link>
                </li>
              );
            })}
          </ul>
        </div>
      ))}
    </nav>
  );
}

function Routes({ path, session }: { path: string; session: Session }) {
  const seg = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (seg.length === 0) return <Overview />;
  const [a, b, c] = seg;
  if (a === 'vms') {
    if (!b) return <VmList />;
    if (b === 'new') return <VmCreate />;
    return <VmDetail id={b} tab={c ?? 'overview'} />;
  }
  if (a === 'images') return b ? <ImageDetail id={b} /> : <Images />;
  if (a === 'buckets' && b && c === 'files') return <BucketBrowser id={b} />;
  if (a === 'events') return <Events />;
  if (a === 'admin' && b === 'storage') return isAdmin(session) ? <Storage /> : <NotFound message="This page is for platform administrators." />;
  const route = a === 'admin' ? `/admin/${b ?? ''}` : `/${a}`;
  const rest = a === 'admin' ? c : b;
  const def = defByRoute(route);
  if (def) {
    if (def.adminOnly && !isAdmin(session)) return <NotFound message="This page is for platform administrators." />;
    return rest ? <ResourceDetail def={def} id={rest} /> : <ResourceList def={def} />;
  }
  return <NotFound message={`There is no page at ${BASE}${path}.`} />;
}
void DEFS;

function Shell({ session, onLogout, onEnded }: { session: Session; onLogout: () => void; onEnded: (notice: string) => void }) {
  const { path } = useLocation();
  const [navOpen, setNavOpen] = useState(false);
  const [pw, setPw] = useState(false);
  return (
    <SessionCtx.Provider value={session}>
      <a class="skip" href="#main">Skip to content</a>
      <header class="top">
        <button type="button" class="nav-toggle" aria-controls="nav" aria-expanded={navOpen} onClick={() => setNavOpen(!navOpen)} data-testid="nav-toggle">
          <span aria-hidden="true">☰</span>
          <span class="sr-only">Menu</span>
        </button>
        <Link to="/" class="brand">Yunhan</Link>
        <span class="who" data-testid="whoami" title={`${session.username} (${session.role}) in project ${session.project_name}`}>
          <span class="trunc">{session.username}</span>
          <span class="muted trunc"> · {session.project_name}</span>
          {isAdmin(session) && <span class="badge">admin</span>}
        </span>
        <button type="button" onClick={() => setPw(true)} data-testid="change-password">Password</button>
        <button type="button" onClick={onLogout} data-testid="logout">Log out</button>
      </header>
      <div class="layout">
        <Nav session={session} path={path} open={navOpen} onNavigate={() => setNavOpen(false)} />
        <main id="main" tabIndex={-1}>
          <Routes path={path} session={session} />
        </main>
      </div>
      {pw && (
        <FormDialog title="Change your password" submit="Change password" onClose={() => setPw(false)} onDone={() => {
            setPw(false);
            // A new password may end this session too.
            api.session().catch(() => onEnded('Your password was changed. Log in with the new one.'));
          }}
          fields={[{ name: 'current', label: 'Current password (if you have one)', type: 'password' }, ...PASSWORD_FIELDS]}
          apply={async (v) => {
            if (String(v.password) !== String(v.again)) throw new Error('The two passwords differ.');
            await api.setPassword(session.user, { password: String(v.password), current_password: str(v, 'current') || undefined });
          }} />
      )}
    </SessionCtx.Provider>
  );
}

function LoginPage({ onLogin, notice }: { onLogin: (s: Session) => void; notice: string | null }) {
  useTitle('Log in');
  const [mode, setMode] = useState<'password' | 'token'>('password');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  return (
    <main class="login" id="main">
      <form
        class="login-box"
        data-testid="login-form"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            onLogin(await api.login(mode === 'password' ? { username, password } : { token: token.trim() }));
          } catch (err) {
            setError(message(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1>Yunhan console</h1>
        {notice && <p class="note" data-testid="login-notice" role="status">{notice}</p>}
        <div class="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === 'password'} class={mode === 'password' ? 'active' : ''} onClick={() => setMode('password')} data-testid="login-mode-password">Password</button>
          <button type="button" role="tab" aria-selected={mode === 'token'} class={mode === 'token' ? 'active' : ''} onClick={() => setMode('token')} data-testid="login-mode-token">API key</button>
        </div>
        {mode === 'password' ? (
          <>
            <div class="field">
              <label for="login-username">User name</label>
              <input id="login-username" name="username" autocomplete="username" required value={username} onInput={(e) => setUsername((e.target as HTMLInputElement).value)} data-testid="login-username" />
            </div>
            <div class="field">
              <label for="login-password">Password</label>
              <input id="login-password" name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword((e.target as HTMLInputElement).value)} data-testid="login-password" />
            </div>
          </>
        ) : (
          <div class="field">
            <label for="login-token">API key</label>
            <input id="login-token" name="token" type="password" autocomplete="off" placeholder="yh_…" required value={token} onInput={(e) => setToken((e.target as HTMLInputElement).value)} data-testid="login-token" />
          </div>
        )}
        {error && <div class="error" role="alert" data-testid="login-error">{error}</div>}
        <button type="submit" class="primary" disabled={busy} data-testid="login-submit">{busy ? 'Logging in…' : 'Log in'}</button>
      </form>
    </main>
  );
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  const { path } = useLocation();

  const accept = (s: Session) => {
    setCsrf(s.csrf_token);
    setNotice(null);
    setSession(s);
  };

  useEffect(() => {
    setUnauthorizedHandler(() => {
      setCsrf('');
      setSession((cur) => {
        if (cur) setNotice('Your session has expired. Log in again.');
        return null;
      });
    });
    const m = /(?:^#|&)login=([^&]+)/.exec(location.hash);
    (async () => {
      if (m) {
        const code = decodeURIComponent(m[1]);
        history.replaceState(null, '', location.pathname + location.search);
        try {
          accept(await api.login({ login_link: code }));
          navigate(BASE + '/', true);
          return;
        } catch (e) {
          setNotice('The login link did not work: ' + message(e));
        }
      }
      try {
        accept(await api.session());
      } catch {
        setSession(null);
      }
    })();
  }, []);

  // Keep the CSRF token fresh and notice an expiry even while idle.
  useEffect(() => {
    if (!session) return;
    const t = window.setInterval(() => {
      if (!document.hidden) api.session().then(accept, (e) => {
        if ((e as { status?: number }).status === 401) {
          setCsrf('');
          setNotice('Your session has expired. Log in again.');
          setSession(null);
        }
      });
    }, 60000);
    return () => clearInterval(t);
  }, [session?.user]);

  if (session === undefined) return <p class="boot">Loading…</p>;
  if (!session) return <LoginPage onLogin={(s) => { accept(s); if (path === '/login') navigate(BASE + '/', true); }} notice={notice} />;
  return (
    <Shell
      session={session}
      onEnded={(n) => {
        setCsrf('');
        setNotice(n);
        setSession(null);
      }}
      onLogout={async () => {
        try {
          await api.logout();
        } catch {
          /* gone already */
        }
        setCsrf('');
        setNotice('You have logged out.');
        setSession(null);
        navigate(BASE + '/', true);
      }}
    />
  );
}

render(<App />, document.getElementById('app')!);
