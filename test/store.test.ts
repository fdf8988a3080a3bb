// The store (pipelines/store.ts): events folded in order, one change per dispatch, none for an empty
// one, changes$ hot and ended by complete().
import test from 'ava';
import { createStore, type Change } from '../pipelines/store.js';

/** A reducer whose state records every event it was given, in order (and never changes its input). */
const append = (state: readonly string[], event: string): readonly string[] => [...state, event];

/** A store over `append` starting empty, with every change and whether changes$ completed. */
function recorded() {
  const store = createStore<readonly string[], string>([], append);
  const changes: Change<readonly string[], string>[] = [];
  const seen = { completed: false };
  store.changes$.subscribe({ next: (c) => changes.push(c), complete: () => (seen.completed = true) });
  return { store, changes, seen };
}

test('dispatch applies the events in order, synchronously', (t) => {
  const { store } = recorded();
  store.dispatch(['a', 'b']);
  t.deepEqual(store.state, ['a', 'b']);
  store.dispatch(['c']);
  t.deepEqual(store.state, ['a', 'b', 'c']);
});

test('each dispatch emits one change with the state before, the events and the state after', (t) => {
  const { store, changes } = recorded();
  const initial = store.state;
  const events = ['a', 'b'];
  store.dispatch(events);
  const afterFirst = store.state;
  store.dispatch(['c']);
  t.is(changes.length, 2);
  t.is(changes[0]!.before, initial);
  t.is(changes[0]!.events, events);
  t.is(changes[0]!.after, afterFirst);
  t.is(changes[1]!.before, afterFirst);
  t.deepEqual(changes[1]!.events, ['c']);
  t.is(changes[1]!.after, store.state);
  t.deepEqual(changes.map((c) => [c.before, c.after]), [
    [[], ['a', 'b']],
    [['a', 'b'], ['a', 'b', 'c']],
  ]);
});

test('an empty dispatch changes nothing and emits no change', (t) => {
  const { store, changes } = recorded();
  store.dispatch(['a']);
  const state = store.state;
  store.dispatch([]);
  t.is(store.state, state);
  t.is(changes.length, 1);
});

test('a change is emitted after the whole dispatch is applied, and the store already reads the new state', (t) => {
  const store = createStore<readonly string[], string>([], append);
  const read: (readonly string[])[] = [];
  store.changes$.subscribe(() => read.push(store.state));
  store.dispatch(['a', 'b']);
  t.deepEqual(read, [['a', 'b']]);
});

test('changes$ is hot: a late subscriber sees only later changes', (t) => {
  const store = createStore<readonly string[], string>([], append);
  store.dispatch(['a']);
  const late: string[][] = [];
  store.changes$.subscribe((c) => late.push([...c.events]));
  store.dispatch(['b']);
  t.deepEqual(late, [['b']]);
});

test('complete ends changes$: later dispatches emit no change', (t) => {
  const { store, changes, seen } = recorded();
  store.dispatch(['a']);
  store.complete();
  t.true(seen.completed);
  store.dispatch(['b']);
  t.is(changes.length, 1);
});
