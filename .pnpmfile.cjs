// node-gyp cannot download Node headers here; build native addons against the system's /usr/include/node.
module.exports = {
  hooks: {
    updateConfig(config) {
      config.extraEnv = { ...(config.extraEnv ?? {}), npm_config_nodedir: '/usr' };
      return config;
    },
  },
};
