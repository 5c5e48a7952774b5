# Installs the default configuration and the systemd unit; included by the install(CODE) rule
# of deploy/CMakeLists.txt at `cmake --install` time (see there for why not at configure time).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(moed_sysconfdir "/etc")
else()
  set(moed_sysconfdir "${CMAKE_INSTALL_PREFIX}/etc")
endif()
if(IS_ABSOLUTE "${moed_bindir}")
  set(moed_bin "${moed_bindir}")
else()
  set(moed_bin "${CMAKE_INSTALL_PREFIX}/${moed_bindir}")
endif()
file(INSTALL "${moed_src}/configs/moed.yaml" DESTINATION "${moed_sysconfdir}/moed")

# The unit names /usr/bin/moed and /etc/moed/moed.yaml; point them at this installation.
file(READ "${moed_src}/deploy/systemd/moed.service" unit)
string(REPLACE "ExecStart=/usr/bin/moed --config /etc/moed/moed.yaml"
               "ExecStart=${moed_bin}/moed --config ${moed_sysconfdir}/moed/moed.yaml"
               unit "${unit}")
file(WRITE "${moed_staging}/moed.service" "${unit}")
file(INSTALL "${moed_staging}/moed.service" DESTINATION "${CMAKE_INSTALL_PREFIX}/${moed_libdir_systemd}")
