import { nextTick } from "vue";

/**
 * Marks in the page's performance timeline for bench/console_render.py: `woodpecker:<view>:data` when the view's
 * data has arrived (call it right after putting the data in the view's state), and `woodpecker:<view>:rendered`
 * once Vue has patched the DOM with it and the browser is about to paint the next frame.
 */
export function markRendered(view: string): void {
  performance.mark(`woodpecker:${view}:data`);
  void nextTick(() => requestAnimationFrame(() => performance.mark(`woodpecker:${view}:rendered`)));
}
