/* The compat-5.3 functions (Debian's lua-compat53-dev) for Lua 5.1 and LuaJIT, compiled
 * once under the llm_compat53_ prefix; see compat.h. Empty for Lua 5.3 and 5.4. */
#include "compat.h"

#if LUA_VERSION_NUM == 501
#include <compat-5.3.c>
#else
typedef int llm_compat_unused;   /* ISO C: a translation unit is not empty */
#endif
