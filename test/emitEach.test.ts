// emitEach (operators/emitEach.ts): each value's array, element by element, in order and at once.
import test from 'ava';
import { take } from 'rxjs';
import { emitEach } from '../operators/emitEach.js';
import { marbles } from './helpers/marbles.js';

const spread = (v: string): string[] => (v === 'a' ? ['1', '2'] : v === 'b' ? [] : [v]);

test('each value becomes its elements, in order, in the same frame; an empty array emits nothing', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    // A group takes as many frames as its characters: c (frame 6) follows it.
    expectObservable(cold('-a--b-c-|').pipe(emitEach(spread))).toBe('-(12)-c-|');
  });
});

test('errors and completion pass through; an error thrown by the function ends the stream with it', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    expectObservable(cold('-a---#').pipe(emitEach(spread))).toBe('-(12)#');
    const boom = (v: string): string[] => {
      if (v === 'x') throw new Error('boom');
      return [v];
    };
    expectObservable(cold('-c-x-c-|').pipe(emitEach(boom))).toBe('-c-#', undefined, new Error('boom'));
  });
});

test('a subscriber that unsubscribes in the middle of an array gets no more of it', (t) => {
  marbles(t, ({ cold, expectObservable }) => {
    expectObservable(cold('-a-|').pipe(emitEach(spread), take(1))).toBe('-(1|)');
  });
});
