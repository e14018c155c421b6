import { onBeforeUnmount, ref, type Ref } from "vue";

/** Whether the window is tablet-wide or narrower (the side menu folds, tables show fewer columns). */
export function useNarrow(query = "(max-width: 1024px)"): Ref<boolean> {
  const media = window.matchMedia(query);
  const narrow = ref(media.matches);
  const follow = (event: MediaQueryListEvent) => {
    narrow.value = event.matches;
  };
  media.addEventListener("change", follow);
  onBeforeUnmount(() => media.removeEventListener("change", follow));
  return narrow;
}
