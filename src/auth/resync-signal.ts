/**
 * Asks this instance to re-read credentials from storage: raised when news of a
 * revocation could not be published, so sockets held here do not wait for the timer.
 */
export class ResyncSignal {
  private readonly listeners = new Set<() => void>();

  listen(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  request(): void {
    for (const listener of [...this.listeners]) listener();
  }
}
