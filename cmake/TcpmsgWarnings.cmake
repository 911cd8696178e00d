# Warning flags shared by every target of the project (library, examples, tests).
# Consumers of the installed package never see them.
add_library(tcpmsg_warnings INTERFACE)
target_compile_options(tcpmsg_warnings INTERFACE
    -Wall -Wextra -Wpedantic
    -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith
    -Wcast-qual -Wwrite-strings -Wvla -Wformat=2 -Wundef
    $<$<BOOL:${TCPMSG_WERROR}>:-Werror>)
