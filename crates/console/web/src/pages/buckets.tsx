// A bucket's file browser: folders by prefix, upload, download, delete.
import { useState } from 'preact/hooks';
import { api, upload, type BucketObject } from '../api';
import { Confirm, ErrorBox, Link, Spinner, Trunc, bytes, useAction, usePoll, useTitle, when } from '../lib';
import { NotFound } from '../resource';

export function BucketBrowser({ id }: { id: string }) {
  const bucket = usePoll((sig) => api.get('buckets', id, sig), [id]);
  const [prefix, setPrefix] = useState('');
  const [token, setToken] = useState<string | undefined>(undefined);
  const listing = usePoll(() => api.objects(id, { prefix, delimiter: '/', page_token: token }), [id, prefix, token], 10000);
  const [progress, setProgress] = useState<{ name: string; fraction: number } | null>(null);
  const [del, setDel] = useState<BucketObject | null>(null);
  const act = useAction();
  const name = bucket.data?.metadata.name ?? id;
  useTitle(`Bucket ${name}`);
  if (bucket.error && !bucket.data) return <NotFound message={bucket.error} />;
  const parts = prefix.split('/').filter(Boolean);
  const go = (p: string) => { setPrefix(p); setToken(undefined); };
  return (
    <section data-testid="bucket-browser">
      <p class="crumbs"><Link to="/buckets">Buckets</Link> / <Link to={`/buckets/${id}`}>{name}</Link> /</p>
      <header class="page-head">
        <h1 class="trunc" title={name}>Files of {name}</h1>
        <label class="button primary">
          Upload files
          <input type="file" multiple class="sr-only" data-testid="object-upload" disabled={act.busy} onChange={async (e) => {
            const files = [...((e.target as HTMLInputElement).files ?? [])];
            (e.target as HTMLInputElement).value = '';
            await act.run(async () => {
              for (const f of files) {
                setProgress({ name: f.name, fraction: 0 });
                await upload(api.objectUrl(id, prefix + f.name), f, (fraction) => setProgress({ name: f.name, fraction })).done;
              }
            });
            setProgress(null);
            listing.reload();
          }} />
        </label>
      </header>
      <nav class="path" aria-label="Folder">
        <button type="button" class="link" onClick={() => go('')}>{name}</button>
        {parts.map((p, i) => (
          <span> / <button type="button" class="link" onClick={() => go(parts.slice(0, i + 1).join('/') + '/')}>{p}</button></span>
        ))}
      </nav>
      {progress && (
        <div class="progress-wrap">
          <span class="trunc">{progress.name}</span>
          <progress max={100} value={Math.round(progress.fraction * 100)} aria-label="Upload progress" />
          <span>{Math.round(progress.fraction * 100)}%</span>
        </div>
      )}
      <ErrorBox error={act.error} />
      <ErrorBox error={listing.error} testid="browser-error" />
      {listing.loading && !listing.data && <Spinner />}
      {listing.data && (
        <div class="scroll-x">
          <table data-testid="objects">
            <thead><tr><th class="name">Name</th><th>Size</th><th>Modified</th><th><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>
              {prefix && (
                <tr><td colSpan={4}><button type="button" class="link" onClick={() => go(parts.slice(0, -1).join('/') + (parts.length > 1 ? '/' : ''))}>↑ Up</button></td></tr>
              )}
              {(listing.data.prefixes ?? []).map((p) => (
                <tr data-testid="folder"><td class="name" colSpan={4}><button type="button" class="link" onClick={() => go(p)}>📁 <Trunc text={p.slice(prefix.length)} /></button></td></tr>
              ))}
              {listing.data.items.map((o) => (
                <tr data-testid="object" data-key={o.key}>
                  <td class="name"><Trunc text={o.key.slice(prefix.length)} /></td>
                  <td>{bytes(o.size)}</td>
                  <td>{when(o.last_modified)}</td>
                  <td class="row-actions">
                    <a href={api.objectUrl(id, o.key)} download={o.key.split('/').pop()}>Download</a>
                    <button type="button" class="link danger" onClick={() => setDel(o)}>Delete</button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {!listing.data.items.length && !(listing.data.prefixes ?? []).length && <p class="empty">This folder is empty.</p>}
          {listing.data.next_page_token && <button type="button" onClick={() => setToken(listing.data!.next_page_token ?? undefined)}>Next page</button>}
        </div>
      )}
      {del && (
        <Confirm title="Delete object" body={`Delete ${del.key}?`} onClose={() => setDel(null)}
          onConfirm={async () => { await api.deleteObject(id, del.key); listing.reload(); }} />
      )}
    </section>
  );
}
