// The audit trail, and the platform's storage (admins).
import { useState } from 'preact/hooks';
import { api } from '../api';
import { ErrorBox, Spinner, Trunc, usePoll, useTitle, when } from '../lib';
import { PoolsCard } from '../kinds';

export function EventsTable({ limit, kind }: { limit: number; kind?: string }) {
  const ev = usePoll(() => api.events({ limit, kind: kind || undefined }), [limit, kind], 5000);
  const items = [...(ev.data?.items ?? [])].reverse();
  return (
    <>
      <ErrorBox error={ev.error} />
      {ev.loading && !ev.data && <Spinner />}
      <div class="scroll-x">
        <table class="small" data-testid="events">
          <thead><tr><th>When</th><th>Kind</th><th>Action</th><th>Target</th><th>Outcome</th><th>By</th><th>Message</th></tr></thead>
          <tbody>
            {items.map((e) => (
              <tr data-testid="event">
                <td title={e.time}>{when(e.time)}</td>
                <td>{e.kind}</td>
                <td>{e.action}</td>
                <td><Trunc text={e.target ?? ''} /></td>
                <td class={e.outcome >= 400 ? 'bad' : ''}>{e.outcome || 'platform'}</td>
                <td><Trunc text={e.actor} /></td>
                <td><Trunc text={e.message ?? ''} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {ev.data && !items.length && <p class="empty">No events.</p>}
    </>
  );
}

export function Events() {
  useTitle('Events');
  const [kind, setKind] = useState('');
  return (
    <section data-testid="page-events">
      <header class="page-head">
        <h1>Events</h1>
        <label class="inline">
          Kind{' '}
          <select value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value)} data-testid="events-kind">
            <option value="">all</option>
            {['instances', 'volumes', 'images', 'vpcs', 'subnets', 'security-groups', 'network-interfaces', 'elastic-ips', 'load-balancers', 'buckets', 'snapshots', 'users', 'projects', 'hosts'].map((k) => <option value={k}>{k}</option>)}
          </select>
        </label>
      </header>
      <EventsTable limit={200} kind={kind} />
    </section>
  );
}

export function Storage() {
  useTitle('Storage');
  const hosts = usePoll((sig) => api.listAll('hosts', {}, sig), [], 10000);
  return (
    <section data-testid="page-storage">
      <h1>Storage</h1>
      <ErrorBox error={hosts.error} />
      {hosts.loading && !hosts.data && <Spinner />}
      {(hosts.data ?? []).map((h) => <PoolsCard pools={h.status.pools ?? []} host={h.metadata.name} />)}
    </section>
  );
}
