// The set of things open right now (connections, sockets) as a doubly-linked list, not a Set or Map.
// Why: V8 rebuilds a Set's table as entries come and go, and every table it drops points to the next
// one. A dropped table that was promoted to the old generation then keeps each table after it alive —
// and every entry in them: connections with their sockets, buffers and closures — through every
// young-generation GC until the next full one. Under load that was nearly every connection since the
// last scavenge (plain HTTP: 2.9 MB copied per scavenge, 4 ms pauses; bench/results/perf8-nepotism.md).
// An entry taken out of this list points to nothing, so nothing dead keeps anything alive.

interface Entry<T> {
  value: T;
  prev: Entry<T> | undefined;
  next: Entry<T> | undefined;
}

export class LiveList<T> {
  private head: Entry<T> | undefined;
  private count = 0;

  /** Add `value`; the returned function takes it out again (once; later calls do nothing). */
  add(value: T): () => void {
    let e: Entry<T> | undefined = { value, prev: undefined, next: this.head };
    if (this.head) this.head.prev = e;
    this.head = e;
    this.count++;
    return () => {
      if (!e) return;
      if (e.prev) e.prev.next = e.next;
      else this.head = e.next;
      if (e.next) e.next.prev = e.prev;
      e.prev = e.next = undefined;
      e = undefined;
      this.count--;
    };
  }

  get size(): number {
    return this.count;
  }

  /** What is in the list now, newest first (a copy: taking entries out while going through it is safe). */
  values(): T[] {
    const out: T[] = [];
    for (let e = this.head; e; e = e.next) out.push(e.value);
    return out;
  }
}
