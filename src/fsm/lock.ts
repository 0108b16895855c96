/**
 * A first-come-first-served readers-writer lock over promises (no timers). The state machine holds it
 * exclusively while applying a batch or installing a snapshot, and shared while answering a query, so a
 * query that reads several keys never sees half of one batch and half of the next.
 */
export class RwLock {
  private readers = 0;
  private writer = false;
  private readonly waiting: { readonly exclusive: boolean; readonly wake: () => void }[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await fn();
    } finally {
      this.readers -= 1;
      this.dispatch();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.dispatch();
    }
  }

  private acquire(exclusive: boolean): Promise<void> {
    if (this.waiting.length === 0 && this.canEnter(exclusive)) {
      this.enter(exclusive);
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push({ exclusive, wake: resolve }));
  }

  private canEnter(exclusive: boolean): boolean {
    return exclusive ? !this.writer && this.readers === 0 : !this.writer;
  }

  private enter(exclusive: boolean): void {
    if (exclusive) this.writer = true;
    else this.readers += 1;
  }

  /** Admits waiters in arrival order while they fit (a run of readers together, a writer alone). */
  private dispatch(): void {
    for (
      let next = this.waiting[0];
      next !== undefined && this.canEnter(next.exclusive);
      next = this.waiting[0]
    ) {
      this.waiting.shift();
      this.enter(next.exclusive);
      next.wake();
    }
  }
}
