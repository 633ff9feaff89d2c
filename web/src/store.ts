/**
 * The page's saved state in IndexedDB: the run's snapshot and, for dropped images, the decoded dataset (the built-in
 * sample is fetched again). One database, one object store, keys "run" and "dataset".
 */
const DB = 'byol-page';
const STORE = 'state';

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB cannot be opened'));
  });
}

async function transact<T>(mode: IDBTransactionMode, work: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = work(tx.objectStore(STORE));
      // Resolve when the transaction commits, not when the request succeeds: only then is a write durable.
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
  } finally {
    db.close();
  }
}

export const saveState = (key: 'run' | 'dataset', value: unknown): Promise<IDBValidKey> => transact('readwrite', (s) => s.put(value, key));
export const loadState = <T>(key: 'run' | 'dataset'): Promise<T | undefined> => transact('readonly', (s) => s.get(key) as IDBRequest<T | undefined>);
export const clearState = (): Promise<undefined> => transact('readwrite', (s) => s.clear());
