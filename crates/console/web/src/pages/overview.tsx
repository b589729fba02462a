// The overview: usage against quota, alarms, recent events, cost.
import { api } from '../api';
import { ErrorBox, Link, Phase, Spinner, Trunc, usePoll, useSession, useTitle } from '../lib';
import { QuotaMeters } from '../kinds';
import { EventsTable } from './misc';

export function Overview() {
  useTitle('Overview');
  const s = useSession();
  const project = usePoll((sig) => api.get('projects', s.project, sig), [s.project], 10000);
  const alarms = usePoll((sig) => api.listAll('alarm-rules', {}, sig), [], 10000);
  const usage = usePoll(() => api.usage(), [], 60000);
  const vms = usePoll((sig) => api.listAll('instances', {}, sig), [], 5000);
  const firing = (alarms.data ?? []).filter((a) => a.status.state === 'firing');
  const byPhase = new Map<string, number>();
  for (const v of vms.data ?? []) byPhase.set(v.status.phase ?? 'Pending', (byPhase.get(v.status.phase ?? 'Pending') ?? 0) + 1);
  return (
    <section data-testid="page-overview">
      <h1>Overview of {s.project_name}</h1>
      <div class="cards">
        <div class="card wide">
          <h2>Usage against quota</h2>
          <ErrorBox error={project.error} />
          {project.data ? <QuotaMeters project={project.data} /> : !project.error && <Spinner />}
        </div>
        <div class="card">
          <h2>Virtual machines</h2>
          <ErrorBox error={vms.error} />
          <p class="big"><Link to="/vms">{vms.data?.length ?? '…'}</Link></p>
          <ul class="plain">
            {[...byPhase.entries()].map(([p, n]) => <li><Phase phase={p} /> {n}</li>)}
          </ul>
        </div>
        <div class="card" data-testid="overview-alarms">
          <h2>Alarms</h2>
          <ErrorBox error={alarms.error} />
          {alarms.data && (
            <p>
              {firing.length ? <b class="bad">{firing.length} firing</b> : <span class="ok">None firing</span>} of {alarms.data.length} rules.{' '}
              <Link to="/alarms">All alarms</Link>
            </p>
          )}
          <ul class="plain">
            {firing.map((a) => (
              <li><Link to={`/alarms/${a.metadata.id}`}><Trunc text={a.metadata.name} /></Link> <span class="muted">{a.spec.metric} {a.spec.comparison ?? 'above'} {a.spec.threshold}</span></li>
            ))}
          </ul>
        </div>
        <div class="card">
          <h2>Cost this month</h2>
          <ErrorBox error={usage.error} />
          {usage.data && (
            <>
              <p class="big">{usage.data.total_cost.toFixed(2)} {usage.data.currency}</p>
              <ul class="plain small">
                {Object.entries(usage.data.totals).slice(0, 8).map(([k, v]) => <li><span class="muted">{k}</span> {Number(v).toFixed(2)}</li>)}
              </ul>
            </>
          )}
        </div>
      </div>
      <section class="card">
        <header class="card-head">
          <h2>Recent events</h2>
          <Link to="/events">All events</Link>
        </header>
        <EventsTable limit={15} />
      </section>
    </section>
  );
}
