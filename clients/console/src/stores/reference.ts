/**
 * The city's departments, categories and grids, as the services publish them (routing's /v1/departments,
 * intake's /v1/categories and /v1/grids): read once per session, to name codes in the reader's language.
 */
import { defineStore } from "pinia";
import { ref } from "vue";

import { ok, useApi, type Category, type Department, type Grid } from "@/api/client";
import { isChinese } from "@/i18n";

export const useReference = defineStore("reference", () => {
  const departments = ref<Department[]>([]);
  const categories = ref<Category[]>([]);
  const grids = ref<Grid[]>([]);
  let loading: Promise<void> | null = null;

  /** Read them, once; a failure is forgotten so that the next screen asks again. */
  function load(): Promise<void> {
    if (loading === null) {
      const api = useApi();
      loading = Promise.all([
        ok(api.routing.GET("/v1/departments")),
        ok(api.intake.GET("/v1/categories")),
        ok(api.intake.GET("/v1/grids")),
      ]).then(([d, c, g]) => {
        departments.value = d.items;
        categories.value = c.items;
        grids.value = g.items;
      });
      loading.catch(() => {
        loading = null;
      });
    }
    return loading;
  }

  function departmentName(code: string | null | undefined): string {
    const department = departments.value.find((d) => d.code === code);
    return department ? (isChinese.value ? department.name_zh : department.name_en) : code ?? "—";
  }

  function categoryName(code: string): string {
    const category = categories.value.find((c) => c.code === code);
    return category ? (isChinese.value ? category.name_zh : category.name_en) : code;
  }

  function gridName(id: string): string {
    return grids.value.find((g) => g.id === id)?.name ?? id;
  }

  return { departments, categories, grids, load, departmentName, categoryName, gridName };
});
