import "./theme.css";

import { createPinia } from "pinia";
import { createApp } from "vue";

import App from "./App.vue";
import { connectApi } from "./api/client";
import { useAuth } from "./auth/store";
import { loadConfig } from "./config";
import { locale, t } from "./i18n";
import { createConsoleRouter, signInRoute } from "./router";

async function boot(): Promise<void> {
  document.documentElement.lang = locale.value;
  const mount = document.getElementById("app");
  let settings;
  try {
    settings = await loadConfig();
  } catch {
    if (mount) {
      mount.textContent = t("app.configFailed");
    }
    return;
  }
  const pinia = createPinia();
  const auth = useAuth(pinia);
  // Before the router reads the address (and writes it back): a sign-in link's token leaves it here.
  await auth.start(new URL(window.location.href), (address) => history.replaceState(history.state, "", address));
  const router = createConsoleRouter(() => ({ role: auth.role, reason: auth.reason }));
  connectApi(settings.services, {
    token: () => auth.token,
    refused: () => {
      if (auth.session !== null) {
        auth.end("refused");
        void router.push(signInRoute("refused", router.currentRoute.value.fullPath));
      }
    },
  });
  auth.$subscribe(() => {
    if (auth.session === null && !router.currentRoute.value.meta.public) {
      void router.push(signInRoute(auth.reason, router.currentRoute.value.fullPath));
    }
  });
  const app = createApp(App);
  app.use(pinia);
  app.use(router);
  await router.isReady();
  app.mount("#app");
}

void boot();
