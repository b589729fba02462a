// The rules of a security group, edited as a table.
import { useEffect, useState } from 'preact/hooks';
import { api, type Obj, type S } from '../api';
import { ErrorBox, useAction } from '../lib';

type Rule = S['SecurityGroupRule'];

export function SecurityGroupRules({ group, onSaved }: { group: Obj<'security-groups'>; onSaved: () => void }) {
  const [rules, setRules] = useState<Rule[]>(() => structuredClone(group.spec.rules ?? []));
  const [dirty, setDirty] = useState(false);
  const act = useAction();
  useEffect(() => {
    if (!dirty) setRules(structuredClone(group.spec.rules ?? []));
  }, [group.metadata.revision]);
  const set = (i: number, r: Partial<Rule>) => {
    setRules(rules.map((x, j) => (j === i ? { ...x, ...r } : x)));
    setDirty(true);
  };
  const port = (s: string) => (s.trim() === '' ? null : Number(s));
  return (
    <section class="card" data-testid="sg-rules">
      <header class="card-head">
        <h2>Rules</h2>
        <button type="button" data-testid="rule-add" onClick={() => { setRules([...rules, { direction: 'ingress', protocol: 'tcp', port_from: 22, port_to: 22, cidr: '0.0.0.0/0' }]); setDirty(true); }}>Add rule</button>
      </header>
      <p class="muted small">Allow rules; everything else is refused. The peer is a CIDR or another group of the VPC (neither: everyone).</p>
      <div class="scroll-x">
        <table class="small rules">
          <thead>
            <tr><th>Direction</th><th>Protocol</th><th>From port</th><th>To port</th><th>Peer CIDR</th><th>Peer group</th><th><span class="sr-only">Remove</span></th></tr>
          </thead>
          <tbody>
            {rules.map((r, i) => (
              <tr data-testid="rule">
                <td>
                  <label class="sr-only" for={`r${i}-dir`}>Direction</label>
                  <select id={`r${i}-dir`} value={r.direction} onChange={(e) => set(i, { direction: (e.target as HTMLSelectElement).value as Rule['direction'] })}>
                    <option value="ingress">ingress</option><option value="egress">egress</option>
                  </select>
                </td>
                <td>
                  <label class="sr-only" for={`r${i}-proto`}>Protocol</label>
                  <select id={`r${i}-proto`} value={r.protocol} onChange={(e) => set(i, { protocol: (e.target as HTMLSelectElement).value as Rule['protocol'] })}>
                    {['any', 'tcp', 'udp', 'icmp'].map((p) => <option value={p}>{p}</option>)}
                  </select>
                </td>
                <td>
                  <label class="sr-only" for={`r${i}-from`}>From port</label>
                  <input id={`r${i}-from`} class="port" inputMode="numeric" value={r.port_from ?? ''} disabled={r.protocol === 'any' || r.protocol === 'icmp'} onInput={(e) => set(i, { port_from: port((e.target as HTMLInputElement).value) })} />
                </td>
                <td>
                  <label class="sr-only" for={`r${i}-to`}>To port</label>
                  <input id={`r${i}-to`} class="port" inputMode="numeric" value={r.port_to ?? ''} disabled={r.protocol === 'any' || r.protocol === 'icmp'} onInput={(e) => set(i, { port_to: port((e.target as HTMLInputElement).value) })} />
                </td>
                <td>
                  <label class="sr-only" for={`r${i}-cidr`}>Peer CIDR</label>
                  <input id={`r${i}-cidr`} value={r.cidr ?? ''} placeholder="0.0.0.0/0" onInput={(e) => set(i, { cidr: (e.target as HTMLInputElement).value || null })} />
                </td>
                <td>
                  <label class="sr-only" for={`r${i}-group`}>Peer group id</label>
                  <input id={`r${i}-group`} value={r.group ?? ''} placeholder="sg-…" onInput={(e) => set(i, { group: (e.target as HTMLInputElement).value || null })} />
                </td>
                <td><button type="button" class="link danger" onClick={() => { setRules(rules.filter((_, j) => j !== i)); setDirty(true); }}>Remove</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {!rules.length && <p class="muted">No rules: nothing gets in (members of the group still reach each other only through rules).</p>}
      <ErrorBox error={act.error} testid="form-error" />
      <div class="buttons">
        <button type="button" disabled={!dirty || act.busy} onClick={() => { setRules(structuredClone(group.spec.rules ?? [])); setDirty(false); act.clear(); }}>Discard</button>
        <button type="button" class="primary" disabled={!dirty || act.busy} data-testid="rules-save" onClick={async () => {
          if (await act.run(() => api.updateSpec('security-groups', group.metadata.id, (s) => { s.rules = rules; }))) { setDirty(false); onSaved(); }
        }}>{act.busy ? 'Saving…' : 'Save rules'}</button>
      </div>
    </section>
  );
}
